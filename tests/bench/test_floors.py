"""The floors tool runs and each pass does the work it names (no timings are checked)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from bench.builder import floors

if TYPE_CHECKING:
    from pathlib import Path

    import pytest

A = "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d"
B = "1b1c2d3e-4f50-4a6b-9c7d-9e0f1a2b3c4d"


def test_floors_count_pairs_users_and_plan_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every pass reports its rows: events read, bad IDs, distinct (user, video) pairs, users."""
    events = tmp_path / "events.parquet"
    pq.write_table(
        pa.table(
            {
                "user_id": [A, A, A, B],
                "video_id": ["v1", "v1", "v2", "v1"],
                "ts": pa.array(
                    [1_746_057_600_000_000 + i * 3_600_000_000 for i in range(4)],
                    pa.timestamp("us"),
                ),
                "country": ["us", "us", "us", "fr"],
                "lang": ["en", "en", "en", "fr"],
                "watch_seconds": [30, 40, 50, 60],
            }
        ),
        events,
    )
    assert floors.main(["--events", str(events), "--plan-rows", "25000"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = {name: p["rows"] for name, p in out["passes"].items()}
    assert rows == {"scan": 4, "validate": 0, "user_video": 3, "user": 2, "plan": 25000}
    assert out["sum_s"] == round(sum(p["s"] for p in out["passes"].values()), 2)
