# Sourced by the scripts beside it: makes (once) the project's virtual environment in
# $GREENHEART_VENV (default .venv) and installs greenheart into it with its development
# extras, again whenever setup.cfg or pyproject.toml change. Sets VENV.
VENV="${GREENHEART_VENV:-$PWD/.venv}"
python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "greenheart needs Python 3.10 or newer; set PYTHON to one" >&2
    exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
    echo "making a virtual environment in $VENV" >&2
    "$python" -m venv "$VENV"
fi
wanted="$(cat setup.cfg pyproject.toml | sha256sum | cut -d' ' -f1)"
stamp="$VENV/.greenheart-installed"
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    echo "installing greenheart and its development tools into $VENV" >&2
    # greenheart was this project's distribution name before greenheart-zmq (and is another
    # project's, with the same import name): either would shadow the checkout
    "$VENV/bin/python" -m pip uninstall --quiet --yes greenheart 2>/dev/null || true
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[dev]"
    echo "$wanted" >"$stamp"
fi
