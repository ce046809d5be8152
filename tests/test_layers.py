"""The package's layers: nothing imports upward, and the core imports neither gevent nor zmq."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "greenheart"

#: the layers, lowest first; a module may import greenheart modules of its layer or below
LAYERS = ("core", "green", "integrations", "bench", "cli")

#: what the core may import besides itself: the standard library and attrs
CORE_MAY_IMPORT = frozenset(sys.stdlib_module_names) | {"attrs", "__future__"}


def imports(source: str) -> set[str]:
    """Every module a piece of source imports, at any depth (functions included)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "greenheart" or len(parts) < 2 or parts[1] not in LAYERS:
        return None
    return parts[1]


def violations(layer: str, imported: set[str]) -> list[str]:
    """The imports a module of ``layer`` must not make."""
    bad = []
    for module in sorted(imported):
        other = layer_of(module)
        if other is not None and LAYERS.index(other) > LAYERS.index(layer):
            bad.append(f"{module} (the {other} layer is above {layer})")
        elif layer == "core" and other is None and module.split(".")[0] not in CORE_MAY_IMPORT:
            if module.split(".")[0] != "greenheart":
                bad.append(f"{module} (the core imports only the standard library and attrs)")
            elif module != "greenheart":
                bad.append(f"{module} (not a layer)")
    return bad


def modules() -> list[tuple[str, Path]]:
    return [
        (path.relative_to(PACKAGE).parts[0], path)
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).parts[0] in LAYERS
    ]


#: beside the layers, at the top: the package, its entry point, and namespaces of re-exports
NAMESPACES = {"fleet.py", "curve.py", "recording.py"}


def test_every_module_is_in_a_layer():
    top_level = {path.name for path in PACKAGE.glob("*.py")}
    assert top_level == {"__init__.py", "__main__.py", *NAMESPACES}
    assert {layer for layer, _ in modules()} == set(LAYERS)


@pytest.mark.parametrize("name", sorted(NAMESPACES))
def test_a_namespace_only_re_exports(name):
    tree = ast.parse((PACKAGE / name).read_text())
    for node in tree.body[1:]:  # after the docstring
        is_all = isinstance(node, ast.Assign) and [t.id for t in node.targets] == ["__all__"]
        assert isinstance(node, ast.ImportFrom) or is_all, ast.dump(node)[:80]


@pytest.mark.parametrize(
    ("layer", "path"), modules(), ids=lambda value: getattr(value, "name", value)
)
def test_no_module_imports_a_layer_above_its_own(layer, path):
    assert violations(layer, imports(path.read_text())) == []


@pytest.mark.parametrize(
    "source", ["import gevent", "import zmq.green", "from zmq import Socket", "import numpy"]
)
def test_the_check_catches_a_core_module_importing_io(source):
    assert violations("core", imports(source))


def test_the_check_catches_upward_imports_even_inside_functions():
    assert violations("core", imports("def f():\n    import greenheart.green.hub\n"))
    assert violations("green", {"greenheart.integrations.wsgi"})
    assert not violations("core", {"attrs", "math", "greenheart.core.wire"})
    assert not violations("cli", {"greenheart.bench.command", "gevent"})


def loaded_after(statement: str) -> set[str]:
    """The top-level modules a fresh interpreter has loaded after ``statement``."""
    listing = "print(' '.join({name.split('.')[0] for name in sys.modules}))"
    code = f"import sys\n{statement}\n{listing}"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def test_importing_the_whole_core_loads_neither_gevent_nor_zmq():
    core = sorted(f"greenheart.core.{path.stem}" for path in (PACKAGE / "core").glob("*.py"))
    loaded = loaded_after("\n".join(f"import {module}" for module in core))
    assert not loaded & {"gevent", "zmq"}


def test_key_helpers_do_not_load_gevent():
    loaded = loaded_after("from greenheart.curve import KeyPair, write_key_pair")
    assert "gevent" not in loaded
    assert "zmq" in loaded  # the keys are zmq.auth's


def test_recordings_load_neither_gevent_nor_zmq():
    loaded = loaded_after("from greenheart.recording import RecordingFile, read, replay")
    assert not loaded & {"gevent", "zmq"}
