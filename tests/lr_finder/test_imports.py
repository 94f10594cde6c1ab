"""The finder's core never imports `keras_tricks.callbacks` (no import circle).

`keras_tricks.callbacks.lr_finder` imports `LRFinder` from the core
(`keras_tricks.lr_finder`), never the other way round. The check runs in a
fresh interpreter that loads the package without its `__init__` (which
imports every subpackage, the callbacks included), imports the core and runs
a short `find_lr`, then lists the modules it loaded.
"""

import ast
import os
import pathlib
import subprocess
import sys

import keras

import keras_tricks

CORE = pathlib.Path(keras_tricks.__file__).parent / "lr_finder"

CODE = """
import importlib.util, sys, types

spec = importlib.util.find_spec("keras_tricks")
package = types.ModuleType("keras_tricks")
package.__path__ = list(spec.submodule_search_locations)
sys.modules["keras_tricks"] = package  # without running its __init__

import keras
import numpy as np

import keras_tricks.lr_finder
from keras_tricks.lr_finder import find_lr

x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
y = x.sum(axis=1, keepdims=True)
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
model.compile(keras.optimizers.SGD(1e-3), "mse")
result = find_lr(model, x, y, batch_size=16, start_lr=1e-4, end_lr=1e-2, num_steps=6)
assert len(result.lrs) == 6, result
print(sorted(m for m in sys.modules if m.startswith("keras_tricks.callbacks")))
"""


def test_the_core_runs_without_importing_the_callbacks():
    env = dict(os.environ, KERAS_BACKEND=keras.backend.backend())
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run(
        [sys.executable, "-c", CODE],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_no_core_module_names_the_callbacks():
    for path in sorted(CORE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [
                    f"{node.module}.{a.name}" for a in node.names
                ]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            assert not any(
                n == "keras_tricks.callbacks" or n.startswith("keras_tricks.callbacks.")
                for n in names
            ), f"{path.name} imports {names}"
