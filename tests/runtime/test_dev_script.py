"""scripts/dev: the local stack in the foreground, one `ready` line, serving until interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
from localstack import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_dev_prints_ready_within_30s_and_serves_until_interrupted(tmp_path):
    """scripts/dev prints one ready line with the documented fields, serves, stops on SIGINT."""
    ports = [free_port() for _ in range(3)]
    log = (tmp_path / "dev.log").open("w+")
    started = time.monotonic()
    proc = subprocess.Popen(
        [str(ROOT / "scripts" / "dev"), "--port", str(ports[0]), "--api-port", str(ports[1]),
         "--origin-port", str(ports[2]), "--persist", str(tmp_path / "state")],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env={**os.environ}, start_new_session=True,
    )  # fmt: skip
    try:
        ready = None
        while time.monotonic() - started < 30 and ready is None:
            assert proc.poll() is None, Path(log.name).read_text()
            for line in Path(log.name).read_text().splitlines():
                if line.startswith("ready "):
                    ready = json.loads(line[len("ready ") :])
            time.sleep(0.1)
        assert ready is not None, "no ready line within 30 s"
        assert ready["worker"] == f"http://127.0.0.1:{ports[0]}"
        assert ready["api"] == f"http://127.0.0.1:{ports[1]}/client/v4"
        assert ready["origin"] == f"http://127.0.0.1:{ports[2]}"
        assert ready["namespaces"] == {"EDGESHELF_KV": "00000000000000000000000000000001"}
        assert ready["account_id"]
        assert ready["token"]
        r = httpx.get(ready["worker"] + "/", timeout=30)
        assert r.status_code == 200
        assert "data-edgeshelf-slot" in r.text
        time.sleep(0.5)  # the per-request log line follows the response
        text = Path(log.name).read_text()
        assert text.count("ready {") == 1
        assert "GET / 200" in text, "a wrangler-style line per request"
        assert (tmp_path / "state" / "kv").exists(), "--persist keeps KV in the folder"
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        code = proc.wait(timeout=20)
    # 130 is the conventional "interrupted" status (Miniflare's exit hook); both are clean exits.
    log.close()
    assert code in (0, 130)
    leftovers = "?"
    for _ in range(50):
        leftovers = subprocess.run(
            ["pgrep", "-a", "-g", str(proc.pid)], capture_output=True, text=True, check=False
        ).stdout.strip()
        if not leftovers:
            break
        time.sleep(0.1)
    assert leftovers == "", f"outlived scripts/dev: {leftovers}"
