"""Reading what the Worker injected back out of a page, for tests and the demo."""

from __future__ import annotations

import json
import re
from typing import Any

SHELF_SCRIPT_ID = "edgeshelf-shelf"
_SHELF_RE = re.compile(
    r'<script type="application/json" id="' + SHELF_SCRIPT_ID + r'">(.*?)</script>', re.S
)


def shelf_from_html(html: str) -> dict[str, Any] | None:
    """The injected shelf payload (ids, segment, fallback level), or None if none was injected."""
    found = _SHELF_RE.findall(html)
    if not found:
        return None
    assert len(found) == 1, "the shelf must be injected exactly once"
    value = json.loads(found[0])
    assert isinstance(value, dict)
    return value
