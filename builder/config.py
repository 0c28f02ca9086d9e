"""Where to publish: the Cloudflare target, read from the environment (and ``wrangler.toml``).

The token is kept out of ``repr`` so that a config object in a log line or traceback cannot leak
it; the only place it is ever used is the ``Authorization`` header of the HTTP client.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from builder.errors import ConfigError
from edgeshelf.config import load_config

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "DEFAULT_BASE_URL",
    "KV_BINDING",
    "Target",
    "load_target",
    "namespace_from_wrangler",
    "served_schema",
]

DEFAULT_BASE_URL: Final = "https://api.cloudflare.com/client/v4"
KV_BINDING: Final = "EDGESHELF_KV"
_ID_RE: Final = re.compile(r"[0-9A-Za-z_-]{1,64}")


@dataclass(frozen=True)
class Target:
    """A KV namespace reachable through the v4 API."""

    base_url: str
    account_id: str
    namespace_id: str
    token: str = field(repr=False)

    @property
    def identity(self) -> str:
        """What the state file is bound to: the same keys in another namespace are not ours."""
        return f"{self.base_url.rstrip('/')}/accounts/{self.account_id}/{self.namespace_id}"


def _wrangler(path: Path) -> dict[str, Any] | None:
    """``wrangler.toml`` parsed, or ``None`` when there is no such file."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc


def namespace_from_wrangler(path: Path, binding: str = KV_BINDING) -> str | None:
    """The ``id`` of the ``[[kv_namespaces]]`` entry with ``binding``, or ``None``."""
    data = _wrangler(path)
    if data is None:
        return None
    entries = data.get("kv_namespaces")
    if not isinstance(entries, list):
        return None
    for entry in entries:
        if isinstance(entry, dict) and entry.get("binding") == binding:
            ns = entry.get("id")
            return ns if isinstance(ns, str) else None
    return None


def served_schema(path: Path) -> str | None:
    """The segment schema a Worker deployed from ``path`` reads, or ``None`` without the file.

    Read by the Worker's own configuration loader, so that an unset or invalid
    ``SEGMENT_SCHEMA`` means here what it means to the Worker (its default).
    """
    data = _wrangler(path)
    if data is None:
        return None
    variables = data.get("vars")
    get = variables.get if isinstance(variables, dict) else (lambda _name: None)
    return load_config(get).schema


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is not set")
    return value


def load_target(
    env: Mapping[str, str] | None = None, *, wrangler: Path = Path("wrangler.toml")
) -> Target:
    """Read the target from ``env`` (default ``os.environ``); raises ConfigError naming a gap."""
    env = os.environ if env is None else env
    token = _required(env, "CLOUDFLARE_API_TOKEN")
    account_id = _required(env, "CLOUDFLARE_ACCOUNT_ID")
    namespace_id = env.get("EDGESHELF_KV_NAMESPACE_ID", "").strip()
    if not namespace_id:
        namespace_id = namespace_from_wrangler(wrangler) or ""
        if not namespace_id:
            raise ConfigError(
                f"EDGESHELF_KV_NAMESPACE_ID is not set (and {wrangler} has no "
                f"[[kv_namespaces]] entry with binding = {KV_BINDING!r})"
            )
    base_url = env.get("CLOUDFLARE_BASE_URL", "").strip() or DEFAULT_BASE_URL
    if not base_url.startswith(("https://", "http://")):
        raise ConfigError("CLOUDFLARE_BASE_URL must be an http(s) URL")
    for name, value in (
        ("CLOUDFLARE_ACCOUNT_ID", account_id),
        ("EDGESHELF_KV_NAMESPACE_ID", namespace_id),
    ):
        # Both become URL path segments: refuse anything that could change the path.
        if not _ID_RE.fullmatch(value):
            raise ConfigError(f"{name} must be an identifier like 0123abcd..., got {value!r}")
    if any(c.isspace() for c in token) or not token.isprintable():
        # Do not echo the value: it is a secret even when malformed.
        raise ConfigError("CLOUDFLARE_API_TOKEN contains whitespace or control characters")
    return Target(
        base_url=base_url.rstrip("/"),
        account_id=account_id,
        namespace_id=namespace_id,
        token=token,
    )
