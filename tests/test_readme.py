"""The README's and the docs' examples run, so they cannot rot; the files they name exist."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def examples() -> list[tuple[str, str, str | None]]:
    """Every Python block of every page, with the text block right after it (what it prints)."""
    found = []
    for page in PAGES:
        for code, printed in re.findall(
            r"```python\n(.*?)```\n(?:\s*It prints:\s*\n\s*```text\n(.*?)```)?",
            page.read_text(),
            flags=re.DOTALL,
        ):
            found.append((page.name, code, printed or None))
    return found


def test_the_pages_have_examples_and_say_what_they_print():
    assert len(examples()) >= 3
    assert all(printed for _, _, printed in examples())


@pytest.mark.parametrize("page,code,printed", examples(), ids=lambda value: str(value).strip()[:30])
def test_every_example_runs_and_prints_what_its_page_says(page, code, printed):
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == printed.splitlines()


def named_files(page: Path) -> set[str]:
    """Repository paths a page names: its links (relative to the page) and its code spans that
    look like paths (from the repository's top)."""
    text = page.read_text()
    links = {
        (page.parent / link).resolve().relative_to(ROOT).as_posix()
        for link in re.findall(r"\]\(([^)#:]+)\)", text)
    }
    spans = re.findall(r"`((?:greenheart|docs|tests|scripts|examples)/[\w./-]*)`", text)
    return links | set(spans)


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_file_a_page_names_is_in_the_repository(page):
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    tracked = set(listed.stdout.split())
    for path in named_files(page):
        folder = path.rstrip("/") + "/"
        assert path in tracked or any(name.startswith(folder) for name in tracked), (
            f"{page.name} names {path}, which is not committed"
        )


def test_the_map_names_every_module():
    listed = subprocess.run(
        ["git", "ls-files", "greenheart"], cwd=ROOT, capture_output=True, text=True
    )
    modules = {
        path for path in listed.stdout.split() if path.endswith(".py")
        and not path.endswith("/__init__.py")
    }  # fmt: skip
    mapped = set(
        re.findall(r"`(greenheart/[\w/]+\.py)`", (ROOT / "docs" / "architecture.md").read_text())
    )
    assert modules - mapped == set(), "modules missing from docs/architecture.md's map"
