"""The README's Python example runs as written (with fewer seeds, so the suite stays fast) and prints the
verdicts the README shows."""

import contextlib
import io
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

README = Path(__file__).resolve().parents[1] / "README.md"


def _rows(text):
    """(dynamics, charge, verdict) of each printed row."""
    return [tuple(re.match(r"(\S+)\s+(\S+)\s+(.+?)\s+order", line).groups()) for line in text.strip().splitlines()]


def test_readme_example_prints_the_verdicts_shown():
    text = README.read_text()
    block = text.split("```python\n")[1].split("```")[0]
    shown = text.split("```text\n")[1].split("```")[0]
    assert "seeds=64" in block
    block = block.replace("seeds=64", "seeds=8")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, str(README), "exec"), {})
    printed = _rows(out.getvalue())
    assert printed == _rows(shown)
    assert ("momentum", "D1", "broken by the flow") in printed and ("gf", "D1", "conserved by the flow") in printed
