"""Small builders of input files for tests."""

# ruff: noqa: S608  # SQL over temporary file paths the test itself created

from __future__ import annotations

import csv
from typing import TYPE_CHECKING, Any

import duckdb

if TYPE_CHECKING:
    from pathlib import Path

    from edgeshelf.experiment import Experiment

UID = "0f8fad5b-d9cb-469f-a165-70867728950e"
UID2 = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
UID3 = "16fd2706-8baf-433b-82eb-8c7f2e5d9a01"
T0 = 1_748_000_000

# The example experiment (90/10 personalized/control), shared by the experiment tests.
EXAMPLE_EXPERIMENT: Experiment = {
    "name": "shelf-2026-12",
    "salt": "a1",
    "arms": [
        {"name": "control", "weight": 10, "treatment": "control"},
        {"name": "personalized", "weight": 90, "treatment": "personalized"},
    ],
}

CATALOG_HEADER = ["video_id", "category", "lang", "published_at", "title"]
EVENT_HEADER = ["user_id", "video_id", "ts", "country", "lang", "watch_seconds"]


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def catalog_rows(n: int = 5, category: str = "music", lang: str = "en") -> list[list[Any]]:
    return [[f"v{i}", category, lang, T0 - 86_400 * i, f"Video {i}"] for i in range(n)]


def csv_to_parquet(src: Path, dst: Path) -> Path:
    con = duckdb.connect()
    con.execute(f"COPY (SELECT * FROM read_csv('{src}')) TO '{dst}' (FORMAT parquet)")
    con.close()
    return dst
