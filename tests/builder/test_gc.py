"""``gc`` through the command line against the fake KV: the served schema and mass deletions."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import pytest

from tests.builder.test_cli import invoke, wrangler_toml

if TYPE_CHECKING:
    from pathlib import Path

    from tests.builder.fakekv import FakeKV


def seed(fake: FakeKV, schema: str, n: int) -> set[str]:
    """``n`` segment keys of ``schema`` in the namespace."""
    keys = {f"seg:x{i:05d}-en-default:{schema}" for i in range(n)}
    fake.store.update(dict.fromkeys(keys, '{"ids":[]}'))
    return keys


@pytest.mark.usefixtures("cf_env")
def test_gc_deletes_the_served_schema_only_when_told(
    fake: FakeKV, state_path: Path, tmp_path: Path
) -> None:
    """With the Worker on v3, gc --keep v4 refuses (exit 2); --delete-served-schema deletes v3."""
    v3, v4 = seed(fake, "v3", 20), seed(fake, "v4", 20)
    args = ["gc", "--keep", "v4", "--state", str(state_path), "--wrangler"]
    refused = invoke(fake, *args, wrangler_toml(tmp_path, "v3"))
    assert refused.exit_code == 2
    assert "gc would delete the 20 segment keys of v3, the schema the Worker reads" in (
        refused.stderr
    )
    assert fake.count("POST bulk/delete") == 0
    told = invoke(fake, *args, wrangler_toml(tmp_path, "v3"), "--delete-served-schema", "--json")
    assert told.exit_code == 0, told.output
    assert json.loads(told.stdout)["deleted"] == 20
    assert set(fake.store) == v4
    assert not v3 & set(fake.store)


@pytest.mark.usefixtures("cf_env")
def test_gc_protects_the_workers_default_schema_and_needs_its_config(
    fake: FakeKV, state_path: Path, tmp_path: Path
) -> None:
    """Unset SEGMENT_SCHEMA means the Worker's default, v3; with no wrangler.toml gc asks for it."""
    everything = seed(fake, "v3", 5) | seed(fake, "v4", 5)
    args = ["gc", "--keep", "v4", "--state", str(state_path), "--wrangler"]
    unset = invoke(fake, *args, wrangler_toml(tmp_path, None))
    assert unset.exit_code == 2
    assert "segment keys of v3, the schema the Worker reads" in unset.stderr
    missing = invoke(fake, *args, str(tmp_path / "no-such.toml"))
    assert missing.exit_code == 2
    assert "cannot tell which segment schema the Worker reads" in missing.stderr
    assert "--wrangler" in missing.stderr
    assert set(fake.store) == everything
    assert fake.count("POST bulk/delete") == 0


@pytest.mark.usefixtures("cf_env")
def test_gc_dry_run_reports_what_would_be_refused(
    fake: FakeKV, state_path: Path, tmp_path: Path
) -> None:
    """A dry run of a refused gc exits 0, lists the keys, says why, and deletes nothing."""
    seed(fake, "v3", 7)
    result = invoke(
        fake, "gc", "--keep", "v4", "--state", str(state_path), "--dry-run", "--json",
        "--wrangler", wrangler_toml(tmp_path, "v3"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["listed"], summary["found"], summary["deleted"]) == (7, 7, 0)
    assert "the schema the Worker reads" in summary["refused"]
    assert "warning: gc would delete the 7 segment keys of v3" in result.stderr
    assert len(fake.store) == 7


@pytest.mark.usefixtures("cf_env")
def test_gc_refuses_a_mass_deletion_and_its_hint_passes(
    fake: FakeKV, state_path: Path, tmp_path: Path
) -> None:
    """gc deleting 1,500 of 3,000 segment keys exits 3; with the --max-delete it prints, it runs."""
    kept, retired = seed(fake, "v4", 1_500), seed(fake, "v2", 1_500)
    args = ["gc", "--keep", "v4", "--state", str(state_path)]
    args += ["--wrangler", wrangler_toml(tmp_path, "v4")]
    refused = invoke(fake, *args)
    assert refused.exit_code == 3
    assert "gc would delete 1500 of 3000 segment keys (50%); is --keep right?" in refused.stderr
    assert set(fake.store) == kept | retired
    hint = re.search(r"--max-delete (\d\.\d\d)", refused.stderr)
    assert hint is not None
    assert hint.group(1) == "0.50"
    allowed = invoke(fake, *args, "--max-delete", hint.group(1), "--json")
    assert allowed.exit_code == 0, allowed.output
    assert json.loads(allowed.stdout)["deleted"] == 1_500
    assert set(fake.store) == kept
