"""Configuration from the environment and wrangler.toml; missing pieces are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.config import DEFAULT_BASE_URL, load_target, namespace_from_wrangler, served_schema
from builder.errors import ConfigError
from tests.builder.fakekv import TOKEN

FULL = {
    "CLOUDFLARE_API_TOKEN": TOKEN,
    "CLOUDFLARE_ACCOUNT_ID": "acc1",
    "EDGESHELF_KV_NAMESPACE_ID": "ns1",
}


@pytest.mark.parametrize("missing", ["CLOUDFLARE_API_TOKEN", "CLOUDFLARE_ACCOUNT_ID"])
def test_missing_variable_is_named(missing: str, tmp_path: Path) -> None:
    """Each required variable, when absent or blank, is named in the error."""
    env = {k: v for k, v in FULL.items() if k != missing} | {missing: "  "}
    with pytest.raises(ConfigError, match=missing) as info:
        load_target(env, wrangler=tmp_path / "none.toml")
    assert info.value.exit_code == 2


def test_namespace_falls_back_to_wrangler_toml(tmp_path: Path) -> None:
    """Without EDGESHELF_KV_NAMESPACE_ID the EDGESHELF_KV binding's id is used."""
    toml = tmp_path / "wrangler.toml"
    toml.write_text(
        '[[kv_namespaces]]\nbinding = "OTHER"\nid = "x"\n\n'
        '[[kv_namespaces]]\nbinding = "EDGESHELF_KV"\nid = "abc123"\n'
    )
    env = {k: v for k, v in FULL.items() if k != "EDGESHELF_KV_NAMESPACE_ID"}
    target = load_target(env, wrangler=toml)
    assert target.namespace_id == "abc123"
    assert target.base_url == DEFAULT_BASE_URL


def test_missing_namespace_everywhere_names_the_variable(tmp_path: Path) -> None:
    """No variable and no binding: the error names EDGESHELF_KV_NAMESPACE_ID."""
    env = {k: v for k, v in FULL.items() if k != "EDGESHELF_KV_NAMESPACE_ID"}
    with pytest.raises(ConfigError, match="EDGESHELF_KV_NAMESPACE_ID"):
        load_target(env, wrangler=tmp_path / "wrangler.toml")


def test_project_wrangler_toml_has_the_binding() -> None:
    """The repository's wrangler.toml declares the namespace the builder falls back to."""
    assert namespace_from_wrangler(Path("wrangler.toml"))


def test_ids_that_would_change_the_url_path_are_refused(tmp_path: Path) -> None:
    """An account id with a slash cannot redirect requests to another path."""
    env = FULL | {"CLOUDFLARE_ACCOUNT_ID": "acc/../../x"}
    with pytest.raises(ConfigError, match="CLOUDFLARE_ACCOUNT_ID"):
        load_target(env, wrangler=tmp_path / "w.toml")


def test_malformed_token_is_refused_without_echoing_it(tmp_path: Path) -> None:
    """A token with whitespace is refused, and the message does not contain it."""
    env = FULL | {"CLOUDFLARE_API_TOKEN": "abc def-SECRET"}
    with pytest.raises(ConfigError) as info:
        load_target(env, wrangler=tmp_path / "w.toml")
    assert "SECRET" not in str(info.value)


def test_token_is_not_in_repr(tmp_path: Path) -> None:
    """A Target printed in a log or traceback does not show the token."""
    target = load_target(FULL, wrangler=tmp_path / "w.toml")
    assert TOKEN not in repr(target)
    assert TOKEN not in target.identity


@pytest.mark.parametrize(
    ("vars_block", "expected"),
    [('[vars]\nSEGMENT_SCHEMA = "v9"\n', "v9"), ("[vars]\n", "v3"), ("", "v3"),
     ('[vars]\nSEGMENT_SCHEMA = "v 9"\n', "v3")],
)  # fmt: skip
def test_served_schema_reads_segment_schema_as_the_worker_does(
    tmp_path: Path, vars_block: str, expected: str
) -> None:
    """SEGMENT_SCHEMA from [vars]; unset or invalid, the Worker's own default (v3)."""
    path = tmp_path / "wrangler.toml"
    path.write_text('name = "x"\n' + vars_block)
    assert served_schema(path) == expected
    assert served_schema(tmp_path / "none.toml") is None
