"""A headless Chromium for the browser tests, driven through playwright-core by driver.mjs.

The driver is a Node child process speaking one JSON line per command and reply; its stdout is
read by a thread into a queue (so a hung browser times out instead of blocking a read) and its
stderr goes to a log file that a failure shows.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import queue
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("driver.mjs")
CHROMIUM = os.environ.get("EDGESHELF_CHROMIUM", "/usr/bin/chromium")
TIMEOUT_S = 60.0


class BrowserError(RuntimeError):
    """The driver reported an error or stopped answering; the message carries its log."""


class Browser:
    """One Chromium, many isolated contexts (each a separate cookie jar)."""

    def __init__(self, log_path: Path, tmp_dir: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        # Playwright puts each launch's fresh --user-data-dir under TMPDIR: keep it in pytest's.
        env = {**os.environ, "TMPDIR": str(tmp_dir)}
        self._proc = subprocess.Popen(
            ["node", str(DRIVER), "--chromium", CHROMIUM],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
        )
        self._replies: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._ids = itertools.count(1)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.version: str = self.call("version")

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._replies.put(json.loads(line))
        self._replies.put(None)

    def call(self, op: str, **args: Any) -> Any:
        """Send one command and wait for its reply."""
        msg_id = next(self._ids)
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write((json.dumps({"id": msg_id, "op": op, **args}) + "\n").encode())
            self._proc.stdin.flush()
            reply = self._replies.get(timeout=TIMEOUT_S)
        except (OSError, queue.Empty) as exc:
            raise BrowserError(f"{op}: no answer from the driver\n{self.log_tail()}") from exc
        if reply is None:
            raise BrowserError(f"{op}: the driver exited\n{self.log_tail()}")
        assert reply["id"] == msg_id
        if not reply["ok"]:
            raise BrowserError(f"{op}: {reply['error']}")
        return reply["result"]

    def new_context(self) -> Context:
        return Context(self, self.call("newContext"))

    def log_tail(self) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-40:])

    def close(self) -> None:
        if self._proc.poll() is None:
            with contextlib.suppress(BrowserError):
                self.call("close")
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
        self._reader.join(timeout=10)
        for pipe in (self._proc.stdin, self._proc.stdout):
            if pipe is not None:
                pipe.close()
        self._log.close()


@dataclass
class Navigation:
    """One page load: the response's status and headers, and the request headers sent."""

    status: int
    url: str
    headers: dict[str, str]
    request_headers: dict[str, str]

    @classmethod
    def of(cls, raw: dict[str, Any]) -> Navigation:
        return cls(raw["status"], raw["url"], raw["headers"], raw["requestHeaders"])


@dataclass
class Page:
    browser: Browser
    id: str

    def goto(self, url: str) -> Navigation:
        return Navigation.of(self.browser.call("goto", page=self.id, url=url))

    def reload(self) -> Navigation:
        return Navigation.of(self.browser.call("reload", page=self.id))

    def evaluate(self, expression: str) -> Any:
        return self.browser.call("evaluate", page=self.id, expression=expression)

    def screenshot(self, path: Path) -> Path:
        self.browser.call("screenshot", page=self.id, path=str(path))
        return path


@dataclass
class Context:
    browser: Browser
    id: str

    def new_page(self) -> Page:
        return Page(self.browser, self.browser.call("newPage", context=self.id))

    def cookies(self, url: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.browser.call("cookies", context=self.id, url=url)
        return result

    def add_cookies(self, cookies: list[dict[str, Any]]) -> None:
        self.browser.call("addCookies", context=self.id, cookies=cookies)

    def close(self) -> None:
        self.browser.call("closeContext", context=self.id)


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """Headless Chromium (Debian's, installed by scripts/setup) for the whole session."""
    missing = [
        what
        for what, path in (
            ("Chromium", Path(CHROMIUM)),
            ("playwright-core", ROOT / "node_modules" / "playwright-core"),
        )
        if not path.exists()
    ]
    if missing:
        # Never a skip: scripts/setup installs both, so a missing one is a broken machine.
        pytest.fail(f"{' and '.join(missing)} missing: run scripts/setup", pytrace=False)
    tmp = tmp_path_factory.mktemp("browser")
    b = Browser(tmp / "driver.log", tmp)
    yield b
    b.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[Context]:
    """A fresh browser context: its own cookie jar, closed after the test."""
    ctx = browser.new_context()
    yield ctx
    ctx.close()
