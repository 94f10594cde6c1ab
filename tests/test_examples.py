"""Every recipe in examples/ runs in fast mode on each backend it claims.

A recipe names its backends in a `# backends: ...` comment near its top. The
test runs it as a user would (`python examples/NAME.py`) with
`KERAS_TRICKS_FAST=1`, which shrinks data and epochs, and checks it exits 0.
"""

import os
import pathlib
import re
import subprocess
import sys

import keras
import pytest

EXAMPLES = sorted(
    pathlib.Path(__file__).parent.parent.joinpath("examples").glob("*.py")
)
BACKEND = keras.backend.backend()


def _claimed_backends(path):
    match = re.search(r"^# backends:\s*(.+)$", path.read_text(), re.MULTILINE)
    if match is None:
        return None
    return {name.strip() for name in match.group(1).split(",")}


def test_every_example_declares_its_backends():
    assert EXAMPLES, "examples/ holds no recipe"
    missing = [p.name for p in EXAMPLES if _claimed_backends(p) is None]
    assert not missing, f"examples without a '# backends:' line: {missing}"


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs_in_fast_mode(path, tmp_path):
    claimed = _claimed_backends(path) or set()
    if BACKEND not in claimed:
        pytest.skip(f"{path.name} claims {sorted(claimed)}, not {BACKEND}")
    env = dict(os.environ)
    env.update(
        KERAS_BACKEND=BACKEND,
        KERAS_TRICKS_FAST="1",
        MPLBACKEND="Agg",
        TF_CPP_MIN_LOG_LEVEL="3",
    )
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run(
        [sys.executable, str(path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, (
        f"{path.name} failed on {BACKEND}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )


def test_every_example_has_a_docs_page_in_the_nav():
    root = pathlib.Path(__file__).parent.parent
    nav = (root / "mkdocs.yml").read_text()
    for path in EXAMPLES:
        page = root / "docs" / "recipes" / f"{path.stem}.md"
        assert page.exists(), f"run scripts/make_recipe_pages.py: {page} is missing"
        assert f'--8<-- "examples/{path.name}"' in page.read_text()
        assert f"recipes/{path.stem}.md" in nav, f"{page} is not in mkdocs.yml nav"
