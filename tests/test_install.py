"""The release as a stranger gets it: the sdist built from the committed files and the wheel
built from the sdist (``python -m build``), the wheel installed by the README's own ``pip
install`` lines into a fresh virtual environment, and every shell command of the README and
docs/ run from there, so that none of them rots (tests/test_readme.py runs the Python examples).

A command runs as written, in a fresh folder, with these changes alone:

- ``pip install`` finds the wheel built here (``--find-links``): no index has it yet;
- each port it names is a free one (the same number, the same free port, throughout its block),
  and the hosts ``0.0.0.0`` and ``monitor`` are 127.0.0.1: the machine is shared, and has no
  host named ``monitor``;
- Locust runs 20 users for 3 s, not thousands for a minute.

A command that serves until stopped (``greenheart monitor``, ``heart``, ``fleet``, or one ending
in ``&``) is started, checked to answer, and stopped with SIGINT, from which it must exit 0
(docs/cli.md): a monitor says it is up and hears its hearts (a small fleet's, when its
block runs none), answers on its ``--http-port`` and ``--metrics-port``; a heart, fleet or Locust
is heard by its block's monitor. The commands this test does not run say why in ``NOT_RUN``.
"""

from __future__ import annotations

import configparser
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

import greenheart
from tests.helpers import free_port
from tests.test_readme import PAGES, ROOT, TRACKED, prose

# the first test that needs the installed wheel builds it and installs it with the README's extras
pytestmark = pytest.mark.timeout(300)

_setup = configparser.ConfigParser()
_setup.read(ROOT / "setup.cfg")
#: the distribution's name on the package index (the import package is ``greenheart``)
NAME = _setup["metadata"]["name"]
#: how long a served command has to say it is up, and a monitor to hear a heart (a CURVE
#: monitor at its default 3 s period hears a heart at its second ping)
UP, HEARD = 30.0, 30.0

#: the commands this test does not run, by a pattern of their start, and why
NOT_RUN = {
    r".*\[-": "a synopsis (docs/cli.md): options in brackets, their values in capitals",
    r"scripts/test\b": "from a clone; it is the command that runs this test",
    r"scripts/bench\b": "from a clone, a minute or two of load; tests/test_bench.py runs it small",
    r"greenheart bench\b": "minutes of load; tests/test_bench.py runs each bench small",
    r"gunicorn -c examples/": "needs a clone and an app; tests/test_gunicorn.py runs it for real",
}
#: commands that serve until stopped
SERVES = r"greenheart (monitor|heart|fleet)\b|.*&$"
#: commands that run to their end
RUNS = r"pip install |greenheart (keys|tune|demo)\b|locust |echo "
#: a command the prose names that is whole enough to run: a monitor, heart or fleet with options
IN_PASSING = r"greenheart (monitor|heart|fleet)( --[\w-]+([ =][\w./:-]+)?)+"
#: commands that bring hearts to a monitor
HEARTS = r"greenheart (heart|fleet)\b|locust "


def strip_comment(line: str) -> str:
    """A shell line without its comment: a ``#`` outside quotes, at the start or after a space."""
    quote = ""
    for at, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (at == 0 or line[at - 1].isspace()):
            return line[:at].rstrip()
    return line.rstrip()


@attrs.frozen
class Block:
    page: str
    number: int  # its place among its page's shell blocks, from 1
    commands: tuple[str, ...]

    @property
    def id(self) -> str:
        return f"{self.page}#{self.number}"


def shell_blocks() -> list[Block]:
    """Every shell block of the README and docs/: its commands, continued lines joined (after a
    backslash, or indented, as a synopsis goes on), comments and blank lines dropped."""
    blocks = []
    for page in PAGES:
        texts = re.findall(r"^```(?:sh|bash|shell)\n(.*?)^```", page.read_text(), re.S | re.M)
        for number, text in enumerate(texts, 1):
            joined = re.sub(r"\s*\\\n\s*|\n[ \t]+", " ", text)
            lines = (strip_comment(line) for line in joined.split("\n"))
            blocks.append(Block(page.name, number, tuple(line for line in lines if line.strip())))
    return blocks


def how(command: str) -> str | None:
    """``run``, ``serve``, why this test does not run it, or None for a command it knows not."""
    for pattern, reason in NOT_RUN.items():
        if re.match(pattern, command):
            return reason
    if re.match(SERVES, command):
        return "serve"
    if re.match(RUNS, command):
        return "run"
    return None


BLOCKS = shell_blocks()
RUNNABLE = [block for block in BLOCKS if any(how(c) in ("run", "serve") for c in block.commands)]


def commands_in_passing() -> list[str]:
    """The commands the docs' prose names in code spans that are whole enough to run: a monitor,
    heart or fleet with options, and no placeholder (``--record FILE`` has one)."""
    found: dict[str, None] = {}
    for page in PAGES:
        for span in re.findall(r"`([^`]+)`", prose(page).replace("\n", " ")):
            if re.fullmatch(IN_PASSING, span) and not re.search(r"\b[A-Z]{2,}\b", span):
                found[span] = None
    return list(found)


@attrs.frozen
class Ran:
    command: str
    returncode: int
    output: str


@attrs.define
class Venv:
    """A fresh virtual environment with the wheel installed, as a stranger's shell sees it."""

    path: Path
    dist: Path
    env: dict[str, str]
    #: the docs' ``pip install`` commands, each run once, as the venv was made
    installs: dict[str, Ran] = attrs.field(factory=dict)

    def run(self, command: str, cwd: Path, timeout: float = 180) -> Ran:
        result = subprocess.run(
            ["bash", "-c", command], cwd=cwd, env=self.env, capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip
        return Ran(command, result.returncode, result.stdout + result.stderr)

    def python(self, code: str, *args: str) -> str:
        result = subprocess.run(
            [str(self.path / "bin" / "python"), "-c", code, *args], cwd=self.path.parent,
            env=self.env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result.stdout


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and the wheel, built from the committed files as they are in the work tree
    (a copy: nothing left in the checkout, built or untracked, can slip in)."""
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("dist")
    for name in TRACKED:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((ROOT / name).read_bytes())
    built = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(source)],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return out


def fresh_env(venv: Path) -> dict[str, str]:
    """This process's environment, less what would let the checkout or its venv be seen."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}
    }
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    env["PYTHONUNBUFFERED"] = "1"  # served commands' lines reach their logs as printed
    return env


@pytest.fixture(scope="session")
def venv(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A fresh venv made by the docs' ``pip install`` commands, each run once here: the blocks
    after them need what they install."""
    path = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120)
    made = Venv(path, dist, fresh_env(path))
    cwd = tmp_path_factory.mktemp("installing")
    for block in BLOCKS:
        for command in block.commands:
            if command.startswith("pip install "):
                made.installs[command] = made.run(adapted(command, {}, dist), cwd)
    outputs = "\n".join(ran.output for ran in made.installs.values())
    assert (path / "bin" / "greenheart").exists(), f"no pip install gave a greenheart: {outputs}"
    return made


def adapted(command: str, ports: dict[str, str], dist: Path) -> str:
    """A command as this test runs it (the module's docstring says what changes)."""

    def port(number: str) -> str:
        return ports.setdefault(number, str(free_port()))

    command = command.removesuffix("&").strip()
    command = re.sub(r"^pip install ", f"pip install --find-links {dist} ", command)
    command = re.sub(
        r"tcp://(?:0\.0\.0\.0|monitor|127\.0\.0\.1|localhost):(\d+)",
        lambda m: f"tcp://127.0.0.1:{port(m[1])}",
        command,
    )
    command = re.sub(r"(--(?:http|metrics)-port[ =])(\d+)", lambda m: m[1] + port(m[2]), command)
    if command.startswith("locust "):
        command, changed = re.subn(r"-u \d+ -r \d+ -t \w+", "-u 20 -r 20 -t 3s", command)
        assert changed, f"{command}: no '-u N -r N -t T' to shorten"
    return command


@attrs.define
class Served:
    command: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float, what: str, count: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while len(re.findall(pattern, self.output())) < count:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.command} exited {self.process.returncode}: "
                                     f"{self.output()}")  # fmt: skip
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.command}: {what} not within {timeout} s: "
                                     f"{self.output()}")  # fmt: skip
            time.sleep(0.05)


@attrs.define
class Session:
    """One block's run: its folder, its ports, and the commands it has serving."""

    venv: Venv
    cwd: Path
    ports: dict[str, str] = attrs.field(factory=dict)
    served: list[Served] = attrs.field(factory=list)

    def monitor(self) -> Served:
        monitors = [s for s in self.served if s.command.startswith("greenheart monitor")]
        assert monitors, "no monitor serves in this block to hear its hearts"
        return monitors[-1]

    def serve(self, command: str) -> Served:
        log = self.cwd / f"served-{len(self.served)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                ["bash", "-c", f"exec {command}"], cwd=self.cwd, env=self.venv.env,
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        served = Served(command, process, log)
        self.served.append(served)
        served.wait_for(r"Ctrl-C stops", UP, "its banner")
        return served

    def run(self, command: str, later: tuple[str, ...]) -> None:
        """Runs a block's command, given the commands that follow it."""
        if command.startswith("pip install "):  # run once, as the venv was made
            ran = self.venv.installs[command]
            assert ran.returncode == 0, ran.output
            extra = re.search(r"\[(\w+)\]", command)
            if extra:  # what the extra names is installed
                self.venv.python(INSTALLED_EXTRA, NAME, extra[1])
            return
        runnable = adapted(command, self.ports, self.venv.dist)
        if how(command) == "run":
            ran = self.venv.run(runnable, self.cwd)
            assert ran.returncode == 0, f"{runnable}: {ran.output}"
            if command.startswith("locust "):
                self.monitor().wait_for(r"new heart heart=", HEARD, "Locust's hearts")
            return
        served = self.serve(runnable)
        if command.startswith("greenheart monitor"):
            answers(served)
            if not any(re.match(HEARTS, c) for c in later):
                self.feed(served)
        elif re.match(HEARTS, command):
            name = re.search(r"--id (\S+)", command)
            heard = f"new heart heart={re.escape(name[1]) if name else ''}"
            self.monitor().wait_for(heard, HEARD, f"its heart ({command})")

    def feed(self, monitor: Served) -> None:
        """Hearts for a monitor whose block brings none: five, for two seconds of beats."""
        addresses = re.findall(r"(--p[io]ng[ =]\S+)", monitor.command)
        self.serve(f"greenheart fleet {' '.join(addresses)} --size 5")
        monitor.wait_for(r"new heart heart=", HEARD, "a fleet's five hearts", count=5)
        time.sleep(2)

    def stop(self) -> None:
        """SIGINT to every served command, newest first: each exits 0."""
        statuses = []
        for served in reversed(self.served):
            if served.process.poll() is None:
                served.process.send_signal(signal.SIGINT)
            try:
                statuses.append((served, served.process.wait(timeout=20)))
            except subprocess.TimeoutExpired:
                statuses.append((served, None))
        for served, status in statuses:
            assert status == 0, f"{served.command} exited {status}: {served.output()}"

    def kill(self) -> None:
        for served in self.served:
            if served.process.poll() is None:
                served.process.kill()
                served.process.wait()


#: run in the venv: the distribution's extra named, and that each package it needs is installed
INSTALLED_EXTRA = """
import importlib.metadata as m, re, sys
name, extra = sys.argv[1:]
wanted = [re.match(r"[\\w.-]+", r)[0] for r in m.requires(name) or () if f'extra == "{extra}"' in r]
assert wanted, f"{name} has no extra {extra}"
print(*(f"{w} {m.version(w)}" for w in wanted))
"""


def answers(served: Served) -> None:
    """A served monitor's page and metrics answer, where it serves them."""
    page = re.search(r"--http-port[ =](\d+)", served.command)
    if page:
        with urllib.request.urlopen(f"http://127.0.0.1:{page[1]}/", timeout=10) as response:
            assert response.status == 200
    metrics = re.search(r"--metrics-port[ =](\d+)", served.command)
    if metrics:
        url = f"http://127.0.0.1:{metrics[1]}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert re.search(r"^greenheart_up 1(\.0)?$", response.read().decode(), re.M)


@pytest.fixture
def session(venv: Venv, tmp_path: Path) -> Iterator[Session]:
    running = Session(venv, tmp_path)
    try:
        yield running
    finally:
        running.kill()


def test_every_shell_command_is_run_or_says_why_not():
    unknown = [(b.id, c) for b in BLOCKS for c in b.commands if how(c) is None]
    assert not unknown, f"say how to run these, or why not (NOT_RUN): {unknown}"
    assert len(RUNNABLE) >= 4


def test_the_readme_installs_the_distribution_by_its_name():
    readme = next(block for block in BLOCKS if block.page == "README.md")
    assert readme.commands[0] == f"pip install {NAME}"
    for command in readme.commands[1:]:
        assert re.fullmatch(rf"pip install '{NAME}\[\w+\]'", command)


def test_the_sdist_holds_the_package_licence_and_changelog_and_no_tests(dist):
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        top, *_ = archive.getnames()
        names = {name.removeprefix(f"{top}/") for name in archive.getnames()}
    package = {name for name in TRACKED if name.startswith("greenheart/")}
    assert package - names == set()
    assert {"LICENSE", "CHANGELOG.md", "README.md", "examples/locustfile.py"} <= names
    assert not any(name.startswith("tests/") for name in names), "its tests need the repository"


def test_the_wheel_holds_every_module_the_page_py_typed_and_the_licence(dist):
    (wheel,) = dist.glob("*.whl")
    assert wheel.name.startswith(f"{NAME.replace('-', '_')}-{greenheart.__version__}-")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        licence = next(name for name in names if name.endswith(".dist-info/licenses/LICENSE"))
        assert archive.read(licence) == (ROOT / "LICENSE").read_bytes()
    package = {name for name in TRACKED if name.startswith("greenheart/")}
    assert package - names == set()
    assert {"greenheart/py.typed", "greenheart/integrations/page/page.html"} <= names


def test_the_installed_release_says_its_version_name_and_licence(venv):
    changelog = (ROOT / "CHANGELOG.md").read_text()
    newest = re.search(r"^## (\S+)", changelog, re.M)
    assert newest and newest[1] == greenheart.__version__  # the changelog names this release
    cwd = venv.path.parent
    version = venv.run("greenheart --version", cwd)
    assert (version.returncode, version.output) == (0, f"greenheart {greenheart.__version__}\n")
    shown = venv.run(f"pip show {NAME}", cwd)
    assert shown.returncode == 0, shown.output
    assert f"Name: {NAME}\n" in shown.output
    assert f"Version: {greenheart.__version__}\n" in shown.output
    assert f"Location: {venv.path}" in shown.output
    where = venv.python("import greenheart; print(greenheart.__file__)")
    assert where.startswith(str(venv.path)), "the checkout, not the wheel, was imported"
    licence = venv.python(f"import importlib.metadata as m; print(m.metadata({NAME!r}).json)")
    assert "'license_expression': 'BSD-3-Clause'" in licence
    installed = venv.python(
        f"import importlib.metadata as m; print(m.distribution({NAME!r}).read_text("
        "'licenses/LICENSE'))"
    )
    assert installed.startswith("BSD 3-Clause License")


@pytest.mark.parametrize("block", RUNNABLE, ids=lambda block: block.id)
def test_the_docs_shell_blocks_run_from_the_wheel(block, session):
    for at, command in enumerate(block.commands):
        if how(command) in ("run", "serve"):
            session.run(command, block.commands[at + 1 :])
    session.stop()


@pytest.mark.parametrize("command", commands_in_passing())
def test_the_commands_the_docs_name_in_passing_run_from_the_wheel(command, session):
    session.run(command, ())
    session.stop()
