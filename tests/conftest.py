"""Test setup shared by every module.

The suite runs once per backend (`KERAS_BACKEND=tensorflow|jax|torch`). Two
logical CPU devices are configured before any backend starts, so the
distribution tests (`tf.distribute.MirroredStrategy`,
`keras.distribution.DataParallel`) have two devices to spread over.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
if os.environ["KERAS_BACKEND"] == "jax":
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = (
            flags + " --xla_force_host_platform_device_count=2"
        ).strip()
if os.environ["KERAS_BACKEND"] == "tensorflow":
    import tensorflow as tf

    _cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        _cpus[0],
        [
            tf.config.LogicalDeviceConfiguration(),
            tf.config.LogicalDeviceConfiguration(),
        ],
    )

import keras  # noqa: E402
import pytest  # noqa: E402

BACKEND = keras.backend.backend()


def pytest_collection_modifyitems(config, items):
    for item in items:
        marker = item.get_closest_marker("backends")
        if marker is not None and BACKEND not in marker.args:
            item.add_marker(
                pytest.mark.skip(reason=f"runs on {marker.args}, not {BACKEND}")
            )


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Each test starts from float32, a fixed seed and a clean session."""
    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(1234)
    yield
    keras.config.set_dtype_policy("float32")
    # free_memory=False skips a full gc.collect() per test (seconds each).
    keras.backend.clear_session(free_memory=False)


@pytest.fixture(scope="session")
def mirrored_strategy():
    """One `tf.distribute.MirroredStrategy` over the 2 logical CPUs per process.

    TensorFlow's CPU collectives are keyed per process: a second strategy
    object in the same process can collide with the first one's collective
    instances ("Shape mismatch in the collective instance"). Every test that
    needs a strategy shares this one.
    """
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    return strategy
