"""The README's examples run, so they cannot rot."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def examples() -> list[tuple[str, str | None]]:
    """Every Python block, with the text block right after it (what it prints), if any."""
    found = re.findall(
        r"```python\n(.*?)```\n(?:\s*It prints:\s*\n\s*```text\n(.*?)```)?", README, flags=re.DOTALL
    )
    return [(code, printed or None) for code, printed in found]


def test_the_readme_has_examples_and_says_what_they_print():
    assert len(examples()) >= 3
    assert all(printed for _, printed in examples())


@pytest.mark.parametrize("code,printed", examples(), ids=lambda value: str(value)[:30])
def test_every_example_runs_and_prints_what_the_readme_says(code, printed):
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == printed.splitlines()
