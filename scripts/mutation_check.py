"""A small hand-made mutation check of the decision code (issue #15).

Each mutant is one exact text replacement in one file. The script copies the
working tree to a scratch folder once, then for each mutant: applies it,
runs the given test files on one backend (stopping at the first failure),
restores the file, and prints whether the tests killed it. A mutant whose
text is not found exactly once is reported as "stale" (the code moved).

    python scripts/mutation_check.py                 # every mutant
    python scripts/mutation_check.py A1 E5 L3        # some of them
    python scripts/mutation_check.py --list          # the table only

Last run (2026-12-03, jax, in-process): every mutant below killed except
three equivalent ones: L8 (the 30% target is 0.3*D below the top of the drop
and 0.7*D above its bottom, so the bottom is never the nearest point), P3
(every `join` in the package is continuous at its boundaries, so a boundary
step has the same value in either piece) and R1 (`wait` is 0 whenever the
cooldown counter is positive: a reduction sets both, and a bad epoch in
cooldown does not count). A7, R9, P6, P7, P8 (argument validation) were not
run: `tests/test_bad_input.py` covers them.

Runs on JAX by default (`--backend` to change); about 1-3 minutes a mutant on
a shared 2-core machine. Not part of the test suite.
"""

import argparse
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MON = "keras_tricks/callbacks/_monitor.py"
ES = "keras_tricks/callbacks/early_stopping.py"
RLR = "keras_tricks/callbacks/reduce_lr_on_plateau.py"
SMART = "keras_tricks/callbacks/smart_reduce_lr_on_plateau.py"
LRF = "keras_tricks/lr_finder/rules.py"
LRF_RESULT = "keras_tricks/lr_finder/result.py"
PRIM = "keras_tricks/schedules/_primitives.py"

T_ES = ["tests/test_early_stopping.py"]
T_PL = ["tests/test_plateau.py"]
# The rule tests of tests/lr_finder/ (the sweep tests train models: slow).
T_LR = [
    "tests/lr_finder/test_rules_edges.py",
    "tests/lr_finder/test_rules.py",
    "tests/lr_finder/test_result.py",
    "-k",
    "minimum or steep or valley or default_suggestion or chain or cyclic or "
    "suggestions_cut or slide or repeated or descent or last_five or first_tenth",
]
T_SC = ["tests/test_schedules.py"]

# id: (file, old text, new text, tests, what the change means)
MUTANTS = {
    # --- _monitor.py: the shared improvement test ---------------------------
    "A1": (MON, "return current < reference - margin",
           "return current <= reference - margin", T_ES + T_PL,
           "min mode: an equal value counts as an improvement"),
    "A2": (MON, "return current > reference + margin",
           "return current > reference - margin", T_ES + T_PL,
           "max mode: the margin helps instead of hindering"),
    "A3": (MON, "return self.min_delta * abs(reference)",
           "return self.min_delta * reference", T_ES + T_PL,
           "rel margin without abs() (negative monitored values)"),
    "A4": (MON, "self.min_delta = abs(float(min_delta))",
           "self.min_delta = float(min_delta)", T_ES + T_PL,
           "a negative min_delta kept negative (Keras takes abs)"),
    "A5": (MON, 'if direction == "up":\n                return "max"',
           'if direction == "up":\n                return "min"', T_ES + T_PL,
           "a metric object's 'up' direction read as min"),
    "A6": (MON, 'if any(word in lower for word in _MAX_WORDS):\n        return "max"',
           'if any(word in lower for word in _MAX_WORDS):\n        return "min"',
           T_ES + T_PL, "names with acc/auc/... inferred as min"),
    "A7": (MON, "bad = value >= high if high_open else value > high",
           "bad = value > high if high_open else value > high", T_ES + T_PL,
           "an open upper bound accepts its end (smoothing=1)"),
    "A8": (MON, "                self._warned_missing = True\n", "", T_ES + T_PL,
           "the missing-metric warning given every epoch"),
    "A9": (MON, "    def _reset_monitor(self):\n        self._warned_missing = False\n",
           "    def _reset_monitor(self):\n", T_ES + T_PL,
           "the missing-metric warning not re-armed for a new fit"),
    "A10": (MON, 'self.best = state.get("best")', "self.best = None", T_ES + T_PL,
            "the best value not restored on resume"),
    # --- early_stopping.py ----------------------------------------------------
    "E1": (ES, "if self.check_finite and not finite:", "if not finite:", T_ES,
           "check_finite=False ignored"),
    "E2": (ES, "if epoch < self.start_from_epoch:", "if epoch <= self.start_from_epoch:",
           T_ES, "start_from_epoch off by one"),
    "E3": (ES, "improved = finite and self._is_improvement(current, self.best)",
           "improved = self._is_improvement(current, self.best)", T_ES,
           "a non-finite first value (check_finite=False) becomes the best"),
    "E4": (ES, "if self.baseline is None or self._is_improvement(current, self.baseline):",
           "if True:", T_ES, "the wait restarts without beating the baseline"),
    "E5": (ES, "if self.wait >= self.patience and epoch > 0:",
           "if self.wait > self.patience and epoch > 0:", T_ES, "patience off by one"),
    "E6": (ES, "if self.wait >= self.patience and epoch > 0:",
           "if self.wait >= self.patience:", T_ES, "patience=0 stops at epoch 0"),
    "E7": (ES, "current, self.stopping_threshold\n", "self.stopping_threshold, current\n",
           T_ES, "stopping threshold direction swapped"),
    "E8": (ES, "return a < b if self.direction", "return a <= b if self.direction", T_ES,
           "thresholds: reaching equals beating"),
    "E9": (ES, "        self.best = None\n        self.best_weights = None\n",
           "        self.best_weights = None\n", T_ES,
           "best not reset for a second fit"),
    "E10": (ES, "        if improved:\n            return\n        if self.wait", "        if self.wait",
            T_ES, "an improving epoch (baseline not beaten) may stop on patience"),
    "E11": (ES, "            self.best_epoch = epoch\n", "", T_ES, "best_epoch never updated"),
    "E12": (ES, "            self.best_weights = None\n\n    def get_state", "\n    def get_state",
            T_ES, "best weights kept alive after restoring them"),
    # --- reduce_lr_on_plateau.py ----------------------------------------------
    "R1": (RLR, "            self.cooldown_counter -= 1\n            self.wait = 0\n",
           "            self.cooldown_counter -= 1\n", T_PL, "wait not reset in cooldown"),
    "R2": (RLR, "            if self.wait >= self.patience:", "            if self.wait > self.patience:",
           T_PL, "patience off by one"),
    "R3": (RLR, "self.cooldown_counter = self.cooldown\n", "self.cooldown_counter = 0\n", T_PL,
           "cooldown never starts"),
    "R4": (RLR, "        elif not self.in_cooldown():", "        else:", T_PL,
           "bad epochs counted during cooldown"),
    "R5": (RLR, "return self._ema / (1.0 - self.smoothing**self._ema_count)",
           "return self._ema", T_PL, "EMA without bias correction"),
    "R6": (RLR, "        self._ema = 0.0\n        self._ema_count = 0\n        self._reset_monitor()",
           "        self._reset_monitor()", T_PL, "EMA not reset for a new fit"),
    "R7": (RLR, "        if not math.isfinite(current):", "        if False:", T_PL,
           "a NaN fed to the EMA and the improvement test"),
    "R8": (RLR, "    def _reset(self):\n        self.best = None\n", "    def _reset(self):\n",
           T_PL, "best not reset for a new fit"),
    "R9": (RLR, "not 0.0 < factor < 1.0", "not 0.0 < factor <= 1.0", T_PL,
           "factor=1 accepted"),
    # --- smart_reduce_lr_on_plateau.py (PlateauRule) -----------------------------
    "S1": (SMART, "return self.window_epochs >= round(self.window)",
           "return self.window_epochs > round(self.window)", T_PL, "aligned window one late"),
    "S2": (SMART, "return self.epochs % self.window == 0",
           "return (self.epochs + 1) % self.window == 0", T_PL, "literal window one early"),
    "S3": (SMART, 'count = self.window if self.alignment == "literal" else self.window_epochs',
           "count = self.window_epochs", T_PL, "literal divides by the epochs summed"),
    "S4": (SMART, "self.last_limit = self.threshold * abs(self.smoothed)",
           "self.last_limit = self.threshold", T_PL, "threshold_mode='rel' ignored"),
    "S5": (SMART, "plateau = self.last_statistic <= self.last_limit",
           "plateau = self.last_statistic < self.last_limit", T_PL, "<= became <"),
    "S6": (SMART, "            self.window *= self.growth\n", "", T_PL, "the window never grows"),
    "S7": (SMART, "            self.cooldown_left = self.cooldown\n", "", T_PL,
           "no cooldown after a plateau"),
    "S8": (SMART, "        self.residual_sum = 0.0\n        self.window_epochs = 0\n        plateau",
           "        self.window_epochs = 0\n        plateau", T_PL,
           "residual sum carried into the next window"),
    "S9": (SMART, "self.residual_sum += value - self.smoothed",
           "self.residual_sum += abs(value - self.smoothed)", T_PL,
           "|residual| summed instead of the residual"),
    "S10": (SMART, "self.smoothed = self.avg / (1.0 - self.beta**self.epochs)",
            "self.smoothed = self.avg", T_PL, "EMA without bias correction"),
    "S11": (SMART, "        self.rule.reset()\n", "", T_PL, "rule not reset for a new fit"),
    # --- lr_finder.py suggestion rules ---------------------------------------
    "L1": (LRF, "higher = losses[:i] > losses[i]", "higher = losses[:i] >= losses[i]", T_LR,
           "valley: non-strict decrease"),
    "L2": (LRF, "start = end - int(length[end])", "start = end - int(length[end]) + 1", T_LR,
           "valley: window one shorter"),
    "L3": (LRF, "start + int(section) + int(section / 2)", "start + int(section)", T_LR,
           "valley: pick 1/3 instead of 1/2 of the valley"),
    "L4": (LRF, "return int(np.argmin(slopes))", "return int(np.argmin(slopes)) + 1", T_LR,
           "steep: the point after the steepest slope"),
    "L5": (LRF_RESULT, 'return lr / 10.0 if method == "minimum" else lr', "return lr", T_LR,
           "minimum: not divided by 10"),
    "L6": (LRF, "while j < len(drops) and drops[j] < 0:",
           "while j < len(drops) and drops[j] <= 0:", T_LR, "chain: flat steps join a run"),
    "L7": (LRF, "target = 0.7 * losses[start] + 0.3 * losses[end]",
           "target = 0.3 * losses[start] + 0.7 * losses[end]", T_LR,
           "chain: 70% down instead of 30%"),
    "L8": (LRF, "segment = losses[start : end + 1]", "segment = losses[start:end]", T_LR,
           "chain: the bottom of the drop left out"),
    "L9": (LRF, "if total < best:", "if total <= best:", T_LR,
           "chain: a later tie wins"),
    "L10": (LRF, "    pick = left\n    while", "    pick = n - 1\n    while", T_LR,
            "slide: no slide picks the last point"),
    "L11": (LRF, "lr_diff = min(lr_diff, n - 1)", "lr_diff = lr_diff", T_LR,
            "slide: short curve not clamped"),
    "L12": (LRF_RESULT, "stop = len(points) - 5", "stop = len(points) - 4", T_LR,
            "usable: only the last 4 dropped"),
    "L13": (LRF_RESULT, "skip = self.num_steps // 10", "skip = 0", T_LR,
            "usable: the first 10% not skipped"),
    "L14": (LRF, "abs(grad[right] - grad[left]) > thresh",
            "abs(grad[right] - grad[left]) >= thresh", T_LR, "slide: > became >="),
    # --- schedules/_primitives.py ----------------------------------------------
    "P1": (PRIM, "    step = ops.maximum(step, lower)\n", "", T_SC, "negative steps not clamped"),
    "P2": (PRIM, "wave = ops.add(1.0, ops.cos(", "wave = ops.subtract(1.0, ops.cos(", T_SC,
           "cosine runs upwards"),
    "P3": (PRIM, "ops.where(ops.less_equal(step, float(end)), value, result)",
           "ops.where(ops.less(step, float(end)), value, result)", T_SC,
           "join: a boundary step belongs to the next piece"),
    "P4": (PRIM, "        if length > 0:\n", "        if length >= 0:\n", T_SC,
           "join: a zero-length piece divides by zero"),
    "P5": (PRIM, "pct = ops.clip(ops.divide(ops.subtract(step, begin), length), 0.0, 1.0)",
           "pct = ops.maximum(ops.divide(ops.subtract(step, begin), length), 0.0)", T_SC,
           "join: the last piece not held at its end"),
    "P6": (PRIM, "    if not float(value).is_integer():\n", "    if False:\n", T_SC,
           "check_int accepts 2.5"),
    "P7": (PRIM, "    if not math.isfinite(value):\n        _fail(f\"Argument `{name}` must be finite.\"",
           "    if False:\n        _fail(f\"Argument `{name}` must be finite.\"", T_SC,
           "check_number accepts inf/NaN"),
    "P8": (PRIM, "if (low > high) or (strict and low == high):", "if low > high:", T_SC,
           "check_order strict ignored"),
    "P9": (PRIM, "warmup_steps = math.ceil(ratio * total_steps)",
           "warmup_steps = int(ratio * total_steps)", T_SC, "warmup_ratio rounded down"),
    "P10": (PRIM, "    elif warmup_steps >= total_steps:", "    elif warmup_steps > total_steps:",
            T_SC, "warmup_steps == total_steps accepted"),
}


def _copy_tree(scratch):
    if os.path.exists(scratch):
        shutil.rmtree(scratch)
    shutil.copytree(
        ROOT,
        scratch,
        ignore=shutil.ignore_patterns(".git", "__pycache__", "site", ".pytest_cache"),
    )


def _run(scratch, tests, backend, timeout):
    env = dict(os.environ, PYTHONPATH=scratch, KERAS_BACKEND=backend, KERAS_TRICKS_FAST="1")
    tests = [
        t
        for t in tests
        if not t.startswith("tests/") or os.path.exists(os.path.join(scratch, t))
    ]
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
    try:
        result = subprocess.run(
            cmd, cwd=scratch, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return "timeout", ""
    tail = result.stdout.strip().splitlines()[-1:] or [""]
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAILED")]
    return ("killed" if result.returncode else "SURVIVED"), (failed[:1] or tail)[0]


def _run_in_process(scratch, tests):
    """pytest in this process: Keras and the backend stay imported (most of
    a run's time on a loaded machine), keras_tricks and the tests reload."""
    import pytest

    tests = [
        t
        for t in tests
        if not t.startswith("tests/") or os.path.exists(os.path.join(scratch, t))
    ]
    for name in list(sys.modules):
        if name.startswith(("keras_tricks", "tests", "test_", "conftest")):
            del sys.modules[name]
    cwd = os.getcwd()
    os.chdir(scratch)
    try:
        code = pytest.main(["-q", "-x", "-p", "no:cacheprovider", "--no-header", *tests])
    finally:
        os.chdir(cwd)
    return ("killed" if code else "SURVIVED"), f"pytest exit {int(code)}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ids", nargs="*", help="mutant ids (default: all)")
    parser.add_argument("--backend", default="jax")
    parser.add_argument("--scratch", default="/tmp/keras_tricks_mutants")
    parser.add_argument("--timeout", type=int, default=1200)
    parser.add_argument("--list", action="store_true", help="print the table only")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run pytest in this process (faster; the backend is imported once)",
    )
    args = parser.parse_args()
    ids = args.ids or list(MUTANTS)
    if args.list:
        for i in ids:
            path, old, new, _, what = MUTANTS[i]
            with open(os.path.join(ROOT, path)) as f:
                text = f.read()
            line = text[: text.find(old)].count("\n") + 1 if old in text else "?"
            found = "" if text.count(old) == 1 else f" STALE ({text.count(old)} matches)"
            print(f"{i:4} {path}:{line}: {what}{found}")
        return
    _copy_tree(args.scratch)
    if args.in_process:
        os.environ.update(KERAS_BACKEND=args.backend, KERAS_TRICKS_FAST="1")
        sys.path.insert(0, args.scratch)
    for i in ids:
        path, old, new, tests, what = MUTANTS[i]
        target = os.path.join(args.scratch, path)
        with open(target) as f:
            original = f.read()
        if original.count(old) != 1:
            print(f"{i:4} stale   {path}: text found {original.count(old)} times", flush=True)
            continue
        line = original[: original.index(old)].count("\n") + 1
        with open(target, "w") as f:
            f.write(original.replace(old, new))
        start = time.time()
        try:
            if args.in_process:
                verdict, detail = _run_in_process(args.scratch, tests)
            else:
                verdict, detail = _run(args.scratch, tests, args.backend, args.timeout)
        finally:
            with open(target, "w") as f:
                f.write(original)
        print(
            f"{i:4} {verdict:8} {path}:{line} ({what}) "
            f"[{time.time() - start:.0f}s] {detail}",
            flush=True,
        )


if __name__ == "__main__":
    main()
