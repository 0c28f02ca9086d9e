"""The rules the JavaScript peers must share with edgeshelf's Worker, dumped from the Python
definitions as one JSON document.

    uv run python -m bench.peer_rules

The edge benchmark (bench/lib/targets.mjs) runs this once per process and hands the document
to bench/workers/jspeer.mjs and jsnaive.mjs as their ``EDGESHELF_RULES`` binding, so the peers
drop the same origin headers, know the same crawlers and read the same shell copies as the
Worker without a second copy of any of these lists. Some of the values are module-private in
``edgeshelf``; reading them here is deliberate: a rename breaks the benchmark loudly instead of
letting the peer drift.
"""

from __future__ import annotations

import json
from typing import Any

from edgeshelf import crawlers, schema, shellrules
from edgeshelf.config import Config

__all__ = ["peer_rules"]

# A TTL no one configures, to turn cache_control_for's unpinned answer into a template.
_TTL_SENTINEL = 987654321


def _unpinned_template() -> str:
    text = shellrules.cache_control_for(False, _TTL_SENTINEL)
    if text.count(str(_TTL_SENTINEL)) != 1:
        raise RuntimeError(f"cannot template cache_control_for(False, ttl): {text!r}")
    return text.replace(str(_TTL_SENTINEL), "{ttl}")


def peer_rules() -> dict[str, Any]:
    """What the peers read from ``EDGESHELF_RULES`` (jscommon.mjs ``loadRules``)."""
    return {
        # schema.kept_headers
        "dropped_headers": sorted(schema.DROPPED_SHELL_HEADERS),
        "header_name_pattern": schema._HEADER_NAME_RE.pattern,
        "max_shell_headers": schema._MAX_SHELL_HEADERS,
        "max_header_value": schema._MAX_HEADER_VALUE,
        # schema.decode_shell_copy / decode_shell_pointer
        "shell_copy_format": schema.SHELL_COPY_FORMAT,
        "max_shell_copy_bytes": schema._MAX_SHELL_COPY_BYTES,
        "max_pointer_bytes": schema._MAX_POINTER_BYTES,
        # crawlers.is_crawler
        "crawler_tokens": sorted(set(crawlers.CRAWLER_TOKENS)),
        "max_ua_scan": crawlers._MAX_UA_SCAN,
        # shellrules.cache_control_for and config's NO_POINTER_SHELL_TTL default
        "cache_control_pinned": shellrules.cache_control_for(True, 0),
        "cache_control_unpinned": _unpinned_template(),
        "no_pointer_shell_ttl": Config().no_pointer_shell_ttl_s,
        # shellrules.page_headers: a page's headers after the shell's own (content type first)
        "page_headers": shellrules.page_headers("{content_type}", ()),
    }


if __name__ == "__main__":
    print(json.dumps(peer_rules(), sort_keys=True))
