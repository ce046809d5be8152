"""The README's and the docs' examples run, so they cannot rot; the files they name exist, and
so do the headings their links point at."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: every committed file, read once as the module loads, so that no test starts a process for it
TRACKED = frozenset(
    subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
)

#: files of other programs that the docs name, and no repository of ours could hold: an
#: ipyparallel profile's config files, the hub's engine table, a gevent module
OTHER_PROGRAMS_FILES = {
    "ipcluster_config.py",
    "ipcontroller_config.py",
    "engines.json",
    "gevent/pool.py",
    "gevent/baseserver.py",
    "gevent/server.py",
    "h11/_events.py",
}

#: what a file name in a code span ends with: a code span ``stats.py`` names a file, where
#: ``zmq.green`` or ``Client.ids`` do not
FILE_NAME = re.compile(
    r"`(\w[\w.-]*(?:/[\w.-]+)*\.(?:py|md|json|png|txt|cfg|toml|ini|sh|html|css|js|typed))`"
)


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
    assert result.stderr == ""  # nothing the page does not show: no warning, no log line


def prose(page: Path) -> str:
    """A page without its fenced code blocks (where ``#`` starts a comment, not a heading)."""
    return re.sub(r"^```.*?^```", "", page.read_text(), flags=re.DOTALL | re.MULTILINE)


def links(page: Path) -> list[tuple[Path, str]]:
    """A page's links to files of the repository, as (the file, the anchor or "")."""
    found = []
    for target in re.findall(r"\]\(([^)\s]+)\)", prose(page)):
        if ":" not in target:  # a URL
            path, _, anchor = target.partition("#")
            found.append(((page.parent / path).resolve() if path else page, anchor))
    return found


def named_files(page: Path) -> set[str]:
    """Repository paths a page names: its links (relative to the page) and its code spans that
    look like paths (from the repository's top)."""
    text = page.read_text()
    linked = {path.relative_to(ROOT).as_posix() for path, _ in links(page)}
    spans = re.findall(r"`((?:greenheart|docs|tests|scripts|examples)/[\w./-]*)`", text)
    return linked | set(spans)


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_file_a_page_names_is_in_the_repository(page):
    for path in named_files(page):
        folder = path.rstrip("/") + "/"
        assert path in TRACKED or any(name.startswith(folder) for name in TRACKED), (
            f"{page.name} names {path}, which is not committed"
        )


def names_no_file(name: str, page: Path) -> bool:
    """Whether a file name, bare (``stats.py``) or with some of its folders (``core/ledger.py``),
    is no committed file, from the repository's top, from the page's folder, or as the end of a
    path."""
    if name in OTHER_PROGRAMS_FILES:
        return False
    beside = (page.parent / name).resolve().relative_to(ROOT).as_posix()
    return not (
        name in TRACKED or beside in TRACKED or any(path.endswith("/" + name) for path in TRACKED)
    )


def stale_names(page: Path) -> set[str]:
    return {name for name in FILE_NAME.findall(prose(page)) if names_no_file(name, page)}


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_file_name_a_page_uses_names_a_committed_file(page):
    stale = stale_names(page)
    assert not stale, f"{page.name} names files that are not in the repository: {sorted(stale)}"


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces as
    hyphens, a repeated one numbered."""
    slugs: set[str] = set()
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6} +(.+?) *$", prose(page), flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        slugs.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return slugs


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_link_to_a_heading_finds_it(page):
    for target, anchor in links(page):
        if anchor and target.suffix == ".md":
            assert anchor in anchors(target), (
                f"{page.name} links to {target.name}#{anchor}, which has no such heading"
            )


def test_the_map_names_every_module():
    modules = {
        path for path in TRACKED if path.startswith("greenheart/") and path.endswith(".py")
        and not path.endswith("/__init__.py")
    }  # fmt: skip
    mapped = set(
        re.findall(r"`(greenheart/[\w/]+\.py)`", (ROOT / "docs" / "architecture.md").read_text())
    )
    assert modules - mapped == set(), "modules missing from docs/architecture.md's map"
