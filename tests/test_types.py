"""mypy holds for the package: strict on the core, every function annotated everywhere."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_mypy():
    result = subprocess.run(
        [sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_package_says_it_is_typed():
    assert (ROOT / "greenheart" / "py.typed").exists()
    assert "greenheart = py.typed" in (ROOT / "setup.cfg").read_text()
