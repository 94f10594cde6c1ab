"""The benchmarks' smoke runs work (their full runs are in docs/benchmarks)."""

import os
import pathlib
import subprocess
import sys

import keras
import pytest

ROOT = pathlib.Path(__file__).parent.parent
BACKEND = keras.backend.backend()


def _run(script, backend):
    env = dict(os.environ, KERAS_BACKEND=backend, MPLBACKEND="Agg")
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--quick"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
@pytest.mark.backends("jax")
def test_convergence_benchmark_quick_mode_runs():
    out = _run("convergence.py", "jax")
    rows = [line for line in out.splitlines() if line.startswith("| kt:")]
    assert len(rows) >= 2, out


@pytest.mark.slow
def test_update_cost_benchmark_quick_mode_runs():
    out = _run("update_cost.py", BACKEND)
    rows = [line for line in out.splitlines() if line.startswith(f"| {BACKEND} |")]
    assert len(rows) == 6, out  # constant, Keras CosineDecay, 4 callbacks


@pytest.mark.slow
@pytest.mark.backends("jax")
def test_optimizers_benchmark_quick_mode_runs():
    out = _run("optimizers.py", "jax")
    memory = [line for line in out.splitlines() if line.startswith("| AdamW8bit |")]
    assert memory, out
    # The memory row: the 8-bit state is about a quarter of AdamW's.
    assert float(memory[0].split("|")[4]) <= 0.27, memory[0]
