"""The benchmarks' smoke runs work (their full runs are in docs/benchmarks)."""

import os
import pathlib
import subprocess
import sys

import keras
import pytest

ROOT = pathlib.Path(__file__).parent.parent
BACKEND = keras.backend.backend()


def _run(script, backend, *flags):
    env = dict(os.environ, KERAS_BACKEND=backend, MPLBACKEND="Agg")
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--quick", *flags],
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
def test_diagnosis_benchmark_smoke_mode_runs():
    env = dict(os.environ, KERAS_BACKEND=BACKEND, MPLBACKEND="Agg")
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "diagnosis.py"), "--smoke"],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "/1 |" in line]
    assert len(rows) == 3, proc.stdout
    assert all("| 1/1 |" in row for row in rows), proc.stdout  # each named right


@pytest.mark.slow
@pytest.mark.backends("jax")
def test_ensembles_benchmark_quick_mode_runs():
    out = _run("ensembles.py", "jax")
    for row in ("| final single model |", "| snapshot ensemble (last 3) |",
                "| 3 independent models |", "| no TTA |", "| SWA (epochs"):
        assert row in out, out


@pytest.mark.slow
@pytest.mark.backends("jax")
def test_lora_benchmark_quick_mode_runs():
    out = _run("lora.py", "jax")
    rows = [line for line in out.splitlines() if line.startswith("| LoRA rank")]
    assert len(rows) == 4 and "| full fine-tuning |" in out, out


@pytest.mark.slow
@pytest.mark.backends("jax")
def test_large_batch_benchmark_quick_mode_runs():
    # One process for the three parts: JAX's start-up is paid once.
    out = _run("large_batch.py", "jax", "--parts", "quality,cost,where")
    rows = [
        line for line in out.splitlines() if line.startswith(("| b32 ", "| b1024 "))
    ]
    assert len(rows) == 6, out  # baseline + five batch-1024 rows
    assert any(line.startswith("| jax |") for line in out.splitlines()), out
    # `where`: one LR per method in the smoke run, each row and its summary.
    where = [
        line
        for line in out.splitlines()
        if line.startswith(("| SGD(momentum=0.9) |", "| LARS(momentum=0.9) |"))
    ]
    assert len(where) == 4, out
    assert "spread of ||w|| / ||g||" in out, out


@pytest.mark.slow
@pytest.mark.backends("jax")
def test_optimizers_benchmark_quick_mode_runs():
    out = _run("optimizers.py", "jax")
    memory = [line for line in out.splitlines() if line.startswith("| AdamW8bit |")]
    assert memory, out
    # The memory row: the 8-bit state is about a quarter of AdamW's.
    assert float(memory[0].split("|")[4]) <= 0.27, memory[0]


@pytest.mark.slow
@pytest.mark.backends("jax")
def test_fit_cost_benchmark_quick_mode_runs():
    # Through `overhead.py --whole-fit`, which runs fit_cost.py.
    out = _run("overhead.py", "jax", "--whole-fit")
    rows = [line for line in out.splitlines() if line.startswith("| jax |")]
    assert len(rows) == 6, out  # five configurations and the table cost
    # The refit and the plain fit after it trace nothing.
    for row in rows[:5]:
        assert row.rstrip(" |").endswith(", 0, 0"), row
