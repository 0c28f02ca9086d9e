"""The production configuration validates offline: wrangler bundles the Python Worker."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wrangler_deploy_dry_run(tmp_path):
    """`wrangler deploy --dry-run` accepts wrangler.toml and bundles src/ without uploading."""
    out = tmp_path / "bundle"
    result = subprocess.run(
        ["npx", "--no-install", "wrangler", "deploy", "--dry-run", "--outdir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        env={
            "PATH": __import__("os").environ["PATH"],
            "HOME": str(tmp_path),
            "CI": "1",
            "WRANGLER_SEND_METRICS": "false",
        },
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "--dry-run: exiting now." in result.stdout + result.stderr
    bundled = {p.name for p in out.rglob("*")}
    assert "entry.py" in bundled
    assert "handler.py" in bundled
