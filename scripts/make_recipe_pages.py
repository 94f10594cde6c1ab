"""Write docs/recipes/NAME.md for every examples/NAME.py (run after adding a recipe).

Each page shows the recipe's title and description, how to run it, and the
script itself, included from examples/ at docs-build time (pymdownx.snippets),
so the page can never drift from the code that the test suite runs.
"""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent


def header(path):
    text = path.read_text()
    title = re.search(r"^Title:\s*(.+)$", text, re.MULTILINE)
    desc = re.search(r"^Description:\s*(.+?)(?:\n\s*\n|\"\"\")", text, re.MULTILINE | re.DOTALL)
    backends = re.search(r"^# backends:\s*(.+)$", text, re.MULTILINE)
    return (
        title.group(1).strip() if title else path.stem.replace("_", " "),
        " ".join(desc.group(1).split()) if desc else "",
        backends.group(1).strip() if backends else "tensorflow, jax, torch",
    )


def page(path):
    title, desc, backends = header(path)
    return (
        f"# {title}\n\n{desc}\n\n"
        f"Backends: {backends}. Run it from the root of a checkout:\n\n"
        f"```bash\npython examples/{path.name}\n"
        f"KERAS_TRICKS_FAST=1 python examples/{path.name}   # a smoke run in seconds\n```\n\n"
        f'```python\n--8<-- "examples/{path.name}"\n```\n'
    )


def main():
    out = ROOT / "docs" / "recipes"
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted((ROOT / "examples").glob("*.py")):
        (out / f"{path.stem}.md").write_text(page(path))
        print(f"docs/recipes/{path.stem}.md")


if __name__ == "__main__":
    main()
