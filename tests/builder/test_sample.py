"""The sample generator: deterministic, valid, and shaped like real traffic."""

# ruff: noqa: S608  # SQL over temporary file paths the test itself created

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import duckdb

from builder.sample import write_sample
from edgeshelf.schema import valid_uid, valid_video_id

if TYPE_CHECKING:
    from pathlib import Path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    """Two runs with one seed write byte-identical files; another seed differs."""
    a = write_sample(tmp_path / "a", users=300, videos=100, events=3000, seed=5)
    b = write_sample(tmp_path / "b", users=300, videos=100, events=3000, seed=5)
    c = write_sample(tmp_path / "c", users=300, videos=100, events=3000, seed=6)
    assert _digest(a.events) == _digest(b.events)
    assert _digest(a.catalog) == _digest(b.catalog)
    assert _digest(a.events) != _digest(c.events)


def test_sample_is_valid_and_realistic(tmp_path: Path) -> None:
    """IDs are valid, popularity is skewed, and there are many locales and categories."""
    files = write_sample(tmp_path, users=2000, videos=500, events=40_000, seed=1)
    con = duckdb.connect()
    uids = [r[0] for r in con.execute(f"SELECT DISTINCT user_id FROM '{files.events}'").fetchall()]
    assert all(valid_uid(u) for u in uids)
    assert len(uids) > 1000
    vids = [r[0] for r in con.execute(f"SELECT video_id FROM '{files.catalog}'").fetchall()]
    assert all(valid_video_id(v) for v in vids)
    assert len(set(vids)) == 500
    locales = con.execute(
        f"SELECT count(DISTINCT (country, lang)) FROM '{files.events}'"
    ).fetchone()
    cats = con.execute(f"SELECT count(DISTINCT category) FROM '{files.catalog}'").fetchone()
    assert locales is not None
    assert locales[0] >= 15
    assert cats is not None
    assert cats[0] >= 10
    top = con.execute(
        f"""SELECT sum(n) FILTER (WHERE r <= 25) / sum(n) FROM (
              SELECT count(*) AS n, row_number() OVER (ORDER BY count(*) DESC) AS r
              FROM '{files.events}' GROUP BY video_id)"""
    ).fetchone()
    assert top is not None
    assert top[0] > 0.2  # the top 5% of videos get over a fifth of views


def test_csv_sample_has_iso_timestamps(tmp_path: Path) -> None:
    """The CSV flavour writes ISO 8601 UTC timestamps and a header."""
    files = write_sample(tmp_path, users=10, videos=5, events=20, fmt="csv")
    first = files.events.read_text().splitlines()[:2]
    assert first[0] == "user_id,video_id,ts,country,lang,watch_seconds"
    assert first[1].split(",")[2].endswith("Z")
