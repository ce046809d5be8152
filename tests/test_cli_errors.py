"""Bad input, refused: every option of every command that takes a port, an address, a period,
a count, a share or a file says what is wrong in one line naming the option, with exit status
2, before anything starts; and the library classes that take the same values refuse them too.
In this process, with no socket bound: argparse refuses before a command runs."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from greenheart import Heart, HeartMonitor, Rules, UsageError
from greenheart.cli import main
from greenheart.core.replay import resample
from greenheart.core.tuning import Setting
from greenheart.integrations.live import LiveServer, live_app
from greenheart.recording import RecordingFile
from tests import pure

HTTP_PORT = "must be a port from 0 to 65535 (0 for any free one), got"
BIND_PORT = "its port must be 0 to 65535 (0 or * for any free one), not"
CONNECT_PORT = "its port must be 1 to 65535, not"
NO_DIRECTORY = "cannot write /no/such/dir/x.rec: no directory /no/such/dir"


def refused(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """The one line ``greenheart argv...`` refuses with, having exited with status 2."""
    try:
        status = main(argv)
    except SystemExit as exit:
        status = exit.code
    err = capsys.readouterr().err
    assert status == 2, err
    assert "Traceback" not in err
    return err.splitlines()[-1]


@pytest.mark.parametrize(
    "argv,line",
    [
        (
            ["monitor", "--http-port", "99999"],
            f"greenheart monitor: error: argument --http-port: {HTTP_PORT} 99999",
        ),
        (
            ["monitor", "--http-port", "-1"],
            f"greenheart monitor: error: argument --http-port: {HTTP_PORT} -1",
        ),
        (
            ["monitor", "--metrics-port", "99999"],
            f"greenheart monitor: error: argument --metrics-port: {HTTP_PORT} 99999",
        ),
        (
            ["monitor", "--ping", "tcp://127.0.0.1:99999"],
            "greenheart monitor: error: argument --ping: tcp://127.0.0.1:99999:"
            f" {BIND_PORT} '99999'",
        ),
        (
            ["monitor", "--pong", "tcp://127.0.0.1:-1"],
            f"greenheart monitor: error: argument --pong: tcp://127.0.0.1:-1: {BIND_PORT} '-1'",
        ),
        (
            ["monitor", "--events", "tcp://127.0.0.1:99999"],
            "greenheart monitor: error: argument --events: tcp://127.0.0.1:99999:"
            f" {BIND_PORT} '99999'",
        ),
        (
            ["monitor", "--record", "/no/such/dir/x.rec"],
            f"greenheart monitor: error: argument --record: {NO_DIRECTORY}",
        ),
        (
            ["monitor", "--state", "/no/such/dir/x.rec"],
            f"greenheart monitor: error: argument --state: {NO_DIRECTORY}",
        ),
        (
            ["monitor", "--period", "0"],
            "greenheart monitor: error: argument --period: must be a positive number, got 0",
        ),
        (
            ["heart", "--ping", "tcp://127.0.0.1:0"],
            f"greenheart heart: error: argument --ping: tcp://127.0.0.1:0: {CONNECT_PORT} '0'",
        ),
        (
            ["fleet", "--size", "1", "--pong", "tcp://127.0.0.1:99999"],
            "greenheart fleet: error: argument --pong: tcp://127.0.0.1:99999:"
            f" {CONNECT_PORT} '99999'",
        ),
        (
            ["events", "tcp://127.0.0.1:99999"],
            f"greenheart events: error: argument ADDR: tcp://127.0.0.1:99999: {CONNECT_PORT}"
            " '99999'",
        ),
        (
            ["demo", "--hearts", "0"],
            "greenheart demo: error: argument --hearts: must be 1 or more, got 0",
        ),
        (
            ["engines", "--connection-file", "x", "-n", "1", "--spread", "-1"],
            "greenheart engines: error: argument --spread: must not be negative, got -1",
        ),
        (
            ["tune", "x.rec", "--period", "0"],
            "greenheart tune: error: argument --period: must be a positive number, got 0",
        ),
        (
            ["tune", "x.rec", "--period=-100"],
            "greenheart tune: error: argument --period: must be a positive number, got -100",
        ),
        (
            ["tune", "x.rec", "--max-misses", "0,-1"],
            "greenheart tune: error: argument --max-misses: must not be negative, got -1 (in 0,-1)",
        ),
        (
            ["tune", "x.rec", "--phi", "-3"],
            "greenheart tune: error: argument --phi: must be a positive number, got -3",
        ),
        (
            ["tune", "x.rec", "--mass-silence-share", "2"],
            "greenheart tune: error: argument --mass-silence-share: must be more than 0 and at"
            " most 1, got 2",
        ),
        (
            ["bench", "storm", "--period", "0"],
            "greenheart bench storm: error: argument --period: must be a positive number, got 0",
        ),
        (
            ["bench", "--json", "/no/such/dir/x.rec"],
            f"greenheart bench ramp: error: argument --json: {NO_DIRECTORY}",
        ),
        (
            ["bench", "tune", "--detect", "soon"],
            "greenheart bench tune: error: argument --detect: a duration such as 5s or 500ms,"
            " not 'soon'",
        ),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else "",
)
def test_a_bad_value_is_one_line_naming_its_option_with_status_2(capsys, argv, line):
    assert refused(capsys, argv) == line


@pytest.mark.skipif(importlib.util.find_spec("ipyparallel") is None, reason="no ipyparallel")
def test_ipcontroller_refuses_what_greenheart_parses_as_the_other_commands_do(capsys):
    assert refused(capsys, ["ipcontroller", "--http-port=99999"]) == (
        f"greenheart ipcontroller: error: argument --http-port: {HTTP_PORT} 99999"
    )
    assert refused(capsys, ["ipcontroller", "--record", "/no/such/dir/x.rec"]) == (
        f"greenheart ipcontroller: error: argument --record: {NO_DIRECTORY}"
    )


def test_tune_refuses_a_recording_too_short_for_the_settings_tried(tmp_path, capsys):
    ledger, take = pure.recording(Rules())
    pure.connect(ledger, 10, 0.0)
    data = b""
    for k in range(13):
        pure.answer(ledger, b"h", k + 0.01, fd=10)
        pure.publish(ledger, k + 1.0)
        pure.beat(ledger, k + 1.0)
        data += take()
    path = tmp_path / "short.rec"
    path.write_bytes(data)
    assert refused(capsys, ["tune", str(path)]) == (
        "greenheart tune: error: the recording covers 13 s, too short to inject a death: the"
        " slowest setting tried (phi=3 pause=1000ms at 1000 ms) may take 21 s to notice one;"
        " record longer, or try shorter periods and fewer misses"
    )
    # settings it is long enough for are weighed, against deaths it noticed
    assert main(["tune", str(path), "--max-misses", "1", "--phi", ""]) == 0
    assert "missed" not in capsys.readouterr().out


def test_the_library_refuses_what_the_options_refuse(tmp_path):
    with pytest.raises(UsageError, match=r"cannot bind pings to 'tcp://127.0.0.1:99999': its"):
        HeartMonitor.bind("tcp://127.0.0.1:99999", "tcp://127.0.0.1:0")
    heart = Heart("tcp://127.0.0.1:0", "tcp://127.0.0.1:1")
    with pytest.raises(UsageError, match=r"cannot connect pings to 'tcp://127.0.0.1:0': its"):
        heart.start()
    with pytest.raises(ValueError, match="'port' must be <= 65535: 99999"):
        LiveServer(None, 99999)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="no directory"):
        RecordingFile(tmp_path / "no" / "x.rec")
    with pytest.raises(ValueError, match=r"period must be a positive number of ms, not 0\.0"):
        Setting(0, Rules())
    with pytest.raises(ValueError, match="a period must be a positive number"):
        resample([], 0)


def test_metrics_without_prometheus_client_say_which_extra_brings_them(monkeypatch, make_monitor):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # an import of it fails
    app = live_app(make_monitor())
    answers = []

    def get(path: str) -> bytes:
        environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
        return b"".join(app(environ, lambda status, headers: answers.append(status)))

    assert get("/metrics") == (
        b"the metrics need prometheus-client: pip install 'greenheart-zmq[metrics]'\n"
    )
    assert get("/nowhere") == b"not found; try /, /live.json, /hearts\n"
    assert answers == ["501 Not Implemented", "404 Not Found"]
