"""The `exclude` argument shared by LARS, TrustRatio and GradientCentralization.

`exclude` names the variables an optimizer (or wrapper) leaves alone. It is
either name patterns (a string or a list of strings: regular expressions
searched in the variable's `path` and `name`) or a callable that takes the
variable (a `keras.Variable`) and returns a Python bool. The decision is made
when the train step is traced, once per variable, so it costs nothing per
update.

A callable is saved by its registered name: it must be decorated with
`keras.saving.register_keras_serializable` (then a `.keras` file loads it
back, in a process that imported the module defining it). Any other callable
(a lambda, a local function) cannot be written into a config; `get_config`
says so instead of writing something that would not load.
"""

import re

import keras
import numpy as np


def _is_registered(fn):
    name = keras.saving.get_registered_name(fn)
    return ">" in name and keras.saving.get_registered_object(name) is fn


class Exclusion:
    """`exclude` parsed once: `exclusion(variable)` is True to leave it alone.

    Args:
        exclude: None, a string, a list of strings, or a callable on the
            variable.
        owner: The name of the class (or function) taking the argument,
            used in error messages.
    """

    def __init__(self, exclude, owner):
        self.owner = owner
        self.fn = None
        self.patterns = ()
        self.names = None
        if exclude is None:
            return
        if callable(exclude) and not isinstance(exclude, str):
            self.fn = exclude
            return
        names = [exclude] if isinstance(exclude, str) else exclude
        try:
            names = list(names)
            self.patterns = tuple(re.compile(p) for p in names)
        except (TypeError, re.error) as err:
            raise ValueError(
                f"Argument `exclude` of {owner} must be a string or a list of "
                "strings (variable-name substrings or regular expressions), "
                "or a callable that takes a variable and returns a bool. "
                f"Received: exclude={exclude!r} ({err})"
            ) from None
        self.names = names

    def __bool__(self):
        return self.fn is not None or bool(self.patterns)

    @property
    def value(self):
        """What the owner exposes as `.exclude`: the callable or the names."""
        return self.fn if self.fn is not None else self.names

    def __call__(self, variable):
        if variable is None:
            return False
        if self.fn is not None:
            result = self.fn(variable)
            if not isinstance(result, (bool, np.bool_)):
                raise TypeError(
                    f"The `exclude` callable of {self.owner} must return a "
                    "Python bool for each variable (it is called once per "
                    "variable when the train step is traced, not on tensors). "
                    f"Received: {result!r} (type {type(result).__name__}) for "
                    f"the variable {getattr(variable, 'path', variable)!r}"
                )
            return bool(result)
        if not self.patterns:
            return False
        names = {getattr(variable, "path", None), getattr(variable, "name", None)}
        names.discard(None)
        return any(p.search(n) for p in self.patterns for n in names)

    def config(self):
        """The config value: the names, or the registered callable's record."""
        if self.fn is None:
            return None if self.names is None else list(self.names)
        if not _is_registered(self.fn):
            name = getattr(self.fn, "__name__", type(self.fn).__name__)
            raise ValueError(
                f"Argument `exclude` of {self.owner} is a callable ({name}) "
                "that is not registered with Keras, so it cannot be written "
                "into the config (saving to `.keras`, `get_config`). Register "
                "it with `@keras.saving.register_keras_serializable()` on a "
                "module-level function, or pass name patterns instead, e.g. "
                'exclude=["bias", "gamma", "beta"].'
            )
        return keras.saving.serialize_keras_object(self.fn)


def exclude_from_config(config, custom_objects=None):
    """Turn a saved callable's record in `config["exclude"]` back into it."""
    value = config.get("exclude")
    if isinstance(value, dict):
        config = dict(config)
        config["exclude"] = keras.saving.deserialize_keras_object(
            value, custom_objects=custom_objects
        )
    return config
