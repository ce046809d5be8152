"""A real browser for tests: headless Chromium driven over the DevTools protocol on a pipe.

No WebDriver and no websocket library: Chromium's ``--remote-debugging-pipe`` reads commands
on descriptor 3 and writes answers on descriptor 4, each a JSON message ended by a NUL byte.
Reads and writes are gevent's, so a server in the test's own process goes on answering the
page meanwhile.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import gevent
import gevent.os

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")

#: Debian's ``chromium`` is a shell script that sets flags and execs this; the binary itself
#: keeps descriptors 3 and 4 for the pipe
DEBIAN_BINARY = Path("/usr/lib/chromium/chromium")


def find_chromium() -> str | None:
    if DEBIAN_BINARY.exists():
        return str(DEBIAN_BINARY)
    return next((path for name in CANDIDATES if (path := shutil.which(name))), None)


class Browser:
    """One headless Chromium with one page; stop() ends it."""

    def __init__(self, width: int = 1280, height: int = 900) -> None:
        executable = find_chromium()
        if executable is None:
            raise RuntimeError("no Chromium: apt-get install chromium")
        self._profile = tempfile.mkdtemp(prefix="greenheart-chromium-")
        self._log = open(os.path.join(self._profile, "stderr"), "w")  # noqa: SIM115
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def descriptors() -> None:  # in the child, before exec: the pipe on 3 and 4
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        self.proc = subprocess.Popen(
            [executable, "--headless=new", "--remote-debugging-pipe", "--no-sandbox",
             "--disable-gpu", "--no-first-run", "--disable-extensions",
             f"--window-size={width},{height}", f"--user-data-dir={self._profile}",
             "about:blank"],
            preexec_fn=descriptors, pass_fds=(3, 4),  # kept: the pipe, once moved there
            stdout=subprocess.DEVNULL, stderr=self._log,
        )  # fmt: skip
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        os.set_blocking(self._from_chrome, False)
        os.set_blocking(self._to_chrome, False)
        self._ids = itertools.count(1)
        self._buffer = b""
        self._session: str | None = None

    def call(self, method: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        """One DevTools command; its result (events met on the way are skipped)."""
        number = next(self._ids)
        message: dict[str, Any] = {"id": number, "method": method, "params": params}
        if self._session is not None and not method.startswith("Target."):
            message["sessionId"] = self._session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[gevent.os.nb_write(self._to_chrome, data) :]
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" not in self._buffer:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"Chromium did not answer {method}")
                with gevent.Timeout(max(0.01, deadline - time.monotonic()), False):
                    chunk = gevent.os.nb_read(self._from_chrome, 1 << 20)
                    if not chunk:
                        raise RuntimeError(f"Chromium exited: {self.last_words()}")
                    self._buffer += chunk
            text, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(text)
            if reply.get("id") == number:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return dict(reply.get("result", {}))

    def open(self, url: str) -> None:
        target = self.call("Target.createTarget", url=url)["targetId"]
        self._session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]

    def evaluate(self, expression: str, await_promise: bool = False) -> Any:
        """The value of ``expression`` in the page (a promise's, awaited, with
        ``await_promise``)."""
        result = self.call(
            "Runtime.evaluate",
            expression=expression,
            returnByValue=True,
            awaitPromise=await_promise,
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 15.0) -> Any:
        """Evaluate ``expression`` until it is truthy; its value (AssertionError at the
        deadline, saying what it last was)."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            gevent.sleep(0.1)
        raise AssertionError(f"the page never had {expression}; last {value!r}")

    def last_words(self) -> str:
        lines = Path(self._log.name).read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else "(nothing on stderr)"

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))

    def stop(self) -> None:
        try:
            self.proc.terminate()
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_chrome, self._from_chrome):
            os.close(fd)
        self._log.close()
        shutil.rmtree(self._profile, ignore_errors=True)
