"""Run the local stack (stack.mjs) as a child process from Python: tests, demo and benchmarks.

Start-up follows the workers-py test fixture: free ports, logs drained to a file (never an
undrained pipe), readiness by polling the ``ready`` line and an HTTP check while watching the
process, and terminate -> wait -> kill on the way out.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from builder.config import KV_BINDING

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

ROOT = Path(__file__).resolve().parents[2]
STACK_JS = ROOT / "scripts" / "local" / "stack.mjs"
# The control document of the stack's KV read faults (scripts/local/kvfaults.mjs).
FAULTS_KEY = "__edgeshelf:kv-faults"


class StackError(RuntimeError):
    """The local stack did not start or stopped unexpectedly; the message carries its log."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class LocalStack:
    """A running local stack: the Worker, the local v4 API and the origin stand-in."""

    process: subprocess.Popen[bytes]
    log_path: Path
    worker: str
    api: str
    origin: str
    account_id: str
    token: str
    namespaces: dict[str, str]
    runtime: str
    # No kept-alive connections: workerd may close one after a long answer without saying so,
    # and the next request on it would fail with a reset that says nothing about the code.
    _client: httpx.Client = field(
        default_factory=lambda: httpx.Client(
            timeout=30, limits=httpx.Limits(max_keepalive_connections=0)
        )
    )

    # --- lifecycle ------------------------------------------------------------------------
    @classmethod
    def start(cls, log_path: Path, **kwargs: Any) -> LocalStack:
        """Start a stack; when a picked port was taken meanwhile (a race), retry on new ones."""
        for attempt in range(3):
            try:
                return cls._start_once(log_path, **kwargs)
            except StackError as exc:
                if "Address already in use" not in str(exc) or kwargs.get("ports") or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    @classmethod
    def _start_once(
        cls,
        log_path: Path,
        *,
        vars: dict[str, str] | None = None,
        persist: Path | None = None,
        ports: tuple[int, int, int] | None = None,
        timeout: float = 60.0,
        quiet: bool = False,
        analytics: bool = False,
        kv_faults: bool = False,
        api_defaults: dict[str, Any] | None = None,
    ) -> LocalStack:
        port, api_port, origin_port = ports or (free_port(), free_port(), free_port())
        token = "local-" + secrets.token_hex(16)
        cmd = [
            "node",
            str(STACK_JS),
            "--port", str(port),
            "--api-port", str(api_port),
            "--origin-port", str(origin_port),
        ]  # fmt: skip
        for key, value in (vars or {}).items():
            cmd += ["--var", f"{key}={value}"]
        if persist is not None:
            cmd += ["--persist", str(persist)]
        if quiet:
            cmd.append("--quiet")
        if analytics:
            cmd.append("--analytics")
        if kv_faults:
            cmd.append("--kv-faults")
        if api_defaults is not None:
            cmd += ["--api-defaults", json.dumps(api_defaults)]
        env = {**os.environ, "EDGESHELF_LOCAL_TOKEN": token}
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = log_path.open("wb")
        process = subprocess.Popen(
            cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
        log.close()
        deadline = time.monotonic() + timeout
        ready: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise StackError(
                    f"local stack exited with {process.returncode}:\n{_tail(log_path)}"
                )
            ready = _ready_line(log_path)
            if ready is not None:
                break
            time.sleep(0.1)
        if ready is None:
            _stop(process)
            raise StackError(f"local stack not ready after {timeout:.0f}s:\n{_tail(log_path)}")
        stack = cls(
            process=process,
            log_path=log_path,
            worker=ready["worker"],
            api=ready["api"],
            origin=ready["origin"],
            account_id=ready["account_id"],
            token=ready["token"],
            namespaces=ready["namespaces"],
            runtime=ready["runtime"],
        )
        stack._wait_http(deadline)
        return stack

    def _wait_http(self, deadline: float) -> None:
        while True:
            try:
                self._client.get(self.origin + "/__origin/stats").raise_for_status()
                return
            except httpx.HTTPError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise StackError(f"local stack not answering:\n{self.log_tail()}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        self._client.close()
        _stop(self.process)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 60) -> str:
        return _tail(self.log_path, lines)

    # --- the namespace and helpers ----------------------------------------------------------
    @property
    def kv_namespace_id(self) -> str:
        return self.namespaces[KV_BINDING]

    @property
    def kv_base(self) -> str:
        return f"{self.api}/accounts/{self.account_id}/storage/kv/namespaces/{self.kv_namespace_id}"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def kv_put(self, key: str, value: str | bytes, *, expiration_ttl: int | None = None) -> None:
        """Write one KV value through the local v4 API (as any other system would)."""
        params = {"expiration_ttl": expiration_ttl} if expiration_ttl else None
        for _ in range(5):
            r = self._client.put(
                f"{self.kv_base}/values/{key}", content=value, params=params, headers=self.auth
            )
            if r.status_code != 429:
                break
            # Like any client of the real API: one write per second per key.
            time.sleep(float(r.headers.get("retry-after", "1")))
        r.raise_for_status()

    def kv_delete(self, key: str) -> None:
        r = self._client.delete(f"{self.kv_base}/values/{key}", headers=self.auth)
        if r.status_code != 404:
            r.raise_for_status()

    def kv_get(self, key: str) -> str | None:
        r = self._client.get(f"{self.kv_base}/values/{key}", headers=self.auth)
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return r.text

    def _api_root(self) -> str:
        return self.api.removesuffix("/client/v4")

    def faults(self, **settings: Any) -> dict[str, Any]:
        """Switch on the local API's fault injection (see docs/local-api.md for the knobs)."""
        r = self._client.post(
            self._api_root() + "/__edgeshelf/faults", json=settings, headers=self.auth
        )
        r.raise_for_status()
        result: dict[str, Any] = r.json()
        return result

    def kv_faults(self, keys: Sequence[str] = (), prefixes: Sequence[str] = ()) -> None:
        """Fail the Worker's KV reads of these keys and prefixes (a stack started with
        ``kv_faults=True``; scripts/local/kvfaults.mjs). Written like any value, so it applies
        from the Worker's next read."""
        self.kv_put(FAULTS_KEY, json.dumps({"keys": list(keys), "prefixes": list(prefixes)}))

    def clear_kv_faults(self) -> None:
        self.kv_delete(FAULTS_KEY)

    def reset_faults(self) -> None:
        r = self._client.post(self._api_root() + "/__edgeshelf/reset", headers=self.auth)
        r.raise_for_status()

    def api_stats(self) -> dict[str, Any]:
        r = self._client.get(self._api_root() + "/__edgeshelf/stats", headers=self.auth)
        r.raise_for_status()
        result: dict[str, Any] = r.json()
        return result

    def origin_config(self, **settings: Any) -> dict[str, Any]:
        """Set the origin stand-in: mode (ok|down|slow|error|nohtml|noslot), delay_ms, pad_bytes,
        chunked (no Content-Length)."""
        r = self._client.post(self.origin + "/__origin/config", json=settings)
        r.raise_for_status()
        result: dict[str, Any] = r.json()
        return result

    def origin_stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._client.get(self.origin + "/__origin/stats").json()
        return result

    def builder_env(self) -> dict[str, str]:
        """Environment that points the builder CLI at this stack's local API."""
        return {
            "CLOUDFLARE_API_TOKEN": self.token,
            "CLOUDFLARE_ACCOUNT_ID": self.account_id,
            "EDGESHELF_KV_NAMESPACE_ID": self.kv_namespace_id,
            "CLOUDFLARE_BASE_URL": self.api,
        }

    def _log_records(self, marker: str, skip: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for line in self.log_text().splitlines():
            start = line.find(marker)
            if start >= 0:
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line[start + skip :]))
        return out

    def worker_logs(self) -> list[dict[str, Any]]:
        """The Worker's JSON log lines (one per personalized request), oldest first."""
        return self._log_records('{"event":"edgeshelf.request"', 0)

    def analytics_points(self) -> list[dict[str, Any]]:
        """Analytics Engine data points the Worker wrote (the local stand-in logs them)."""
        return self._log_records("analytics {", len("analytics "))

    def wait_worker_logs(
        self, until: Callable[[list[dict[str, Any]]], bool], timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """The Worker's log records once ``until(records)`` holds (or the timeout passed).

        Log lines reach the file through Node after the response, so a test reading right
        after a request must wait for its line rather than race it.
        """
        return _poll(self.worker_logs, until, timeout)

    def wait_analytics_points(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Analytics Engine points once there are at least ``count`` (as the log lines)."""
        return _poll(self.analytics_points, lambda points: len(points) >= count, timeout)


def _poll(
    read: Callable[[], list[dict[str, Any]]],
    until: Callable[[list[dict[str, Any]]], bool],
    timeout: float,
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        records = read()
        if until(records) or time.monotonic() > deadline:
            return records
        time.sleep(0.02)


def _ready_line(log_path: Path) -> dict[str, Any] | None:
    for line in log_path.read_text(errors="replace").splitlines():
        if line.startswith("ready {"):
            value: dict[str, Any] = json.loads(line[len("ready ") :])
            return value
    return None


def _tail(log_path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
