"""The convergence benchmark's smoke run works (its full run is in docs/benchmarks)."""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).parent.parent


@pytest.mark.slow
@pytest.mark.backends("jax")
def test_convergence_benchmark_quick_mode_runs():
    env = dict(os.environ, KERAS_BACKEND="jax", MPLBACKEND="Agg")
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "convergence.py"), "--quick"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| kt:")]
    assert len(rows) >= 2, proc.stdout


@pytest.mark.slow
def test_update_cost_benchmark_quick_mode_runs():
    import keras

    backend = keras.backend.backend()
    env = dict(os.environ, KERAS_BACKEND=backend)
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "update_cost.py"), "--quick"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith(f"| {backend} |")]
    assert len(rows) == 6, proc.stdout  # constant, Keras CosineDecay, 4 callbacks
