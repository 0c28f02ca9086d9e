"""Reliability scenarios record a row each (scenario, load, faults, 5xx, keys lost).

`scripts/reliability` runs them at full size with EDGESHELF_RELIABILITY_OUT set and renders
docs/reliability.md from the rows; `scripts/test` runs the same tests at a small size.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable

FULL = os.environ.get("EDGESHELF_FULL") == "1"
OUT = os.environ.get("EDGESHELF_RELIABILITY_OUT")


def scale(fast: int, full: int) -> int:
    """The size of a scenario: small in scripts/test, full under scripts/reliability."""
    return full if FULL else fast


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Callable[..., None]:
    """Record one scenario's figures; asserts stay in the test, this only reports them."""

    def _record(
        area: str,
        scenario: str,
        *,
        load: str,
        faults: str,
        five_xx: int,
        keys_lost: int | str,
        notes: str = "",
    ) -> None:
        if not OUT:
            return
        row: dict[str, Any] = {
            "area": area,
            "scenario": scenario,
            "load": load,
            "faults": faults,
            "five_xx": five_xx,
            "keys_lost": keys_lost,
            "notes": notes,
            "test": request.node.nodeid,
        }
        with Path(OUT).open("a") as fh:
            fh.write(json.dumps(row) + "\n")

    return _record
