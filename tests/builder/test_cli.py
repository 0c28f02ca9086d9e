"""The command line through click's runner, against the fake KV: exit codes and output."""

from __future__ import annotations

import io
import json
import re
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from click.testing import CliRunner, Result
from rich.console import Console

from builder.cli import _RichReporter, main
from builder.sample import write_sample
from builder.state import RunLock, State
from edgeshelf.schema import ShellCopy, decode_shell_copy, decode_shell_pointer
from tests.builder.conftest import NOW, SMALL_K
from tests.builder.fakekv import TOKEN, FakeKV

if TYPE_CHECKING:
    from pathlib import Path

    from builder.sample import SampleFiles


def wrangler_toml(tmp_path: Path, schema: str | None) -> str:
    """A wrangler.toml for the fake namespace whose Worker reads ``schema`` (None: unset)."""
    path = tmp_path / f"wrangler-{schema}.toml"
    var = "" if schema is None else f'SEGMENT_SCHEMA = "{schema}"\n'
    path.write_text(f'[[kv_namespaces]]\nbinding = "EDGESHELF_KV"\nid = "ns0123"\n\n[vars]\n{var}')
    return str(path)


def invoke(fake: FakeKV | None, *args: str) -> Result:
    obj = {"transport": fake.transport()} if fake is not None else {}
    return CliRunner().invoke(main, list(args), obj=obj, catch_exceptions=False)


def run_args(files: SampleFiles, state: Path, *extra: str) -> list[str]:
    return [
        "--events", str(files.events), "--catalog", str(files.catalog), "--state", str(state),
        "--min-segment-size", str(SMALL_K), "--now", str(NOW), *extra,
    ]  # fmt: skip


@pytest.mark.usefixtures("cf_env")
def test_run_then_rerun_writes_nothing(
    fake: FakeKV, small_sample: SampleFiles, state_path: Path
) -> None:
    """A second run on the same input writes no key and makes no request."""
    first = invoke(fake, "run", *run_args(small_sample, state_path), "--json")
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    written = summary["publish"]["written"]["total"]
    assert written == len(fake.store) > 600
    requests = len(fake.requests)
    second = json.loads(invoke(fake, "run", *run_args(small_sample, state_path), "--json").stdout)
    assert second["plan"]["write"]["total"] == 0
    assert second["publish"]["requests"] == 0
    assert len(fake.requests) == requests


@pytest.mark.usefixtures("cf_env")
def test_human_summary_names_the_counts(
    fake: FakeKV, small_sample: SampleFiles, state_path: Path
) -> None:
    """Without --json the summary states keys planned, written, skipped, failed, requests."""
    result = invoke(fake, "run", *run_args(small_sample, state_path))
    assert result.exit_code == 0
    for needle in (
        "keys planned:",
        "keys written:",
        "skipped",
        "failed: 0",
        "requests:",
        "retries:",
    ):
        assert needle in result.stdout


def test_plan_needs_no_credentials(small_sample: SampleFiles, state_path: Path) -> None:
    """``plan`` is a dry run against the state file only."""
    result = invoke(None, "plan", *run_args(small_sample, state_path), "--json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)["plan"]
    assert plan["write"]["new"]["profiles"] == plan["computed"]["profiles"] > 0
    # Under 10,000 writes: segments and profiles go in one shared bulk request.
    assert plan["requests"] == {"write": 1, "delete": 0, "total": 1}
    assert json.loads(result.stdout)["publish"] is None
    assert not state_path.exists()  # a dry run leaves no state file behind


@pytest.mark.parametrize(
    "missing", ["CLOUDFLARE_API_TOKEN", "CLOUDFLARE_ACCOUNT_ID", "EDGESHELF_KV_NAMESPACE_ID"]
)
def test_missing_configuration_exits_2_naming_it(
    monkeypatch: pytest.MonkeyPatch,
    cf_env: dict[str, str],
    small_sample: SampleFiles,
    tmp_path: Path,
    missing: str,
) -> None:
    """Exit code 2 and the variable's name when the target is incomplete."""
    monkeypatch.delenv(missing)
    args = run_args(small_sample, tmp_path / "s.sqlite", "--wrangler", str(tmp_path / "no.toml"))
    result = invoke(FakeKV(), "run", *args)
    assert result.exit_code == 2
    assert missing in result.stderr


@pytest.mark.usefixtures("cf_env")
def test_bad_input_exits_3_with_file_row_column(
    fake: FakeKV, small_sample: SampleFiles, tmp_path: Path
) -> None:
    """A refused input exits 3, names file/row/column, and nothing is published."""
    bad = tmp_path / "events.csv"
    bad.write_text(
        "user_id,video_id,ts,country,lang,watch_seconds\n"
        "0f8fad5b-d9cb-469f-a165-70867728950e,v0000001,1748000000,us,en,-4\n"
    )
    args = ["--events", str(bad), "--catalog", str(small_sample.catalog)]
    result = invoke(fake, "run", *args, "--state", str(tmp_path / "s.sqlite"))
    assert result.exit_code == 3
    assert f"{bad}, row 1, column watch_seconds: negative duration" in result.stderr
    assert fake.requests == []


@pytest.mark.usefixtures("cf_env")
def test_overlapping_run_exits_4(fake: FakeKV, small_sample: SampleFiles, state_path: Path) -> None:
    """While another run holds the lock, a second one refuses to start."""
    with RunLock(State.lock_path(state_path)):
        result = invoke(fake, "run", *run_args(small_sample, state_path))
    assert result.exit_code == 4
    assert "another builder run" in result.stderr
    assert fake.requests == []


@pytest.mark.usefixtures("cf_env")
def test_unconfirmed_keys_exit_1_and_rerun_completes(
    fake: FakeKV, small_sample: SampleFiles, state_path: Path
) -> None:
    """Persistent 5xx leave the run incomplete (exit 1); the next run finishes the job."""
    fake.fault("PUT bulk", 503, times=3)  # every attempt of the first batch
    first = invoke(fake, "run", *run_args(small_sample, state_path))
    assert first.exit_code == 1
    assert "not confirmed" in first.stderr
    second = invoke(fake, "run", *run_args(small_sample, state_path), "--json")
    assert second.exit_code == 0
    assert json.loads(second.stdout)["complete"] is True


@pytest.mark.usefixtures("cf_env")
def test_token_never_appears_in_output(
    fake: FakeKV, small_sample: SampleFiles, state_path: Path
) -> None:
    """Neither success, API refusals nor status print the token."""
    outputs = [invoke(fake, "run", *run_args(small_sample, state_path)).output]
    fake.fault("PUT bulk", 403)
    outputs.append(
        invoke(fake, "run", *run_args(small_sample, state_path, "--schema", "v9")).output
    )
    outputs.append(invoke(fake, "status", "--state", str(state_path), "--json").output)
    outputs.append(invoke(fake, "gc", "--keep", "v3", "--state", str(state_path)).output)
    assert "403" in outputs[1]
    for text in outputs:
        assert TOKEN not in text
        assert TOKEN[4:20] not in text


@pytest.mark.usefixtures("cf_env")
def test_a_429_is_reported_as_waiting_until_a_time(
    fake: FakeKV, small_sample: SampleFiles, state_path: Path
) -> None:
    """A 429 (retry-after: 1) prints that every request waits and until when; the run completes."""
    fake.fault("PUT bulk", 429, headers={"retry-after": "1"})
    started = time.monotonic()
    result = invoke(fake, "run", *run_args(small_sample, state_path), "--json")
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started >= 1.0
    line = next(x for x in result.stderr.splitlines() if x.startswith("waiting: "))
    assert re.fullmatch(
        r"waiting: rate limited by Cloudflare \(HTTP 429\): every request waits until "
        r"\d\d:\d\d:\d\d \S+ \([01] s\)",
        line,
    ), line
    assert json.loads(result.stdout)["complete"] is True


def test_progress_bars_say_they_wait_until_the_pause_ends() -> None:
    """On a terminal every unfinished bar says it waits (429) until when, and drops it after."""
    out = io.StringIO()
    reporter = _RichReporter(Console(file=out, force_terminal=True, width=200))
    reporter.start("segments", 3)
    reporter.start("profiles", 10)
    reporter.advance("segments", 3)
    reporter.waiting(time.time() + 0.3)
    labels = {t.description for t in reporter.progress.tasks}
    assert any(
        re.fullmatch(r"writing profiles — waiting \(429\) until \d\d:\d\d:\d\d", x) for x in labels
    )
    assert "writing segments" in labels  # a finished bar is left alone
    assert "every request waits until" in out.getvalue()
    time.sleep(0.35)
    reporter.advance("profiles", 5)
    assert {t.description for t in reporter.progress.tasks} == {
        "writing segments",
        "writing profiles",
    }


@pytest.mark.usefixtures("cf_env")
def test_api_refusal_exits_5(fake: FakeKV, small_sample: SampleFiles, state_path: Path) -> None:
    """A 403 from Cloudflare exits 5 with the API's error."""
    fake.fault("PUT bulk", 403)
    result = invoke(fake, "run", *run_args(small_sample, state_path))
    assert result.exit_code == 5
    assert "injected 403" in result.stderr


@pytest.mark.usefixtures("cf_env")
def test_interrupted_run_exits_130_and_is_recorded_incomplete(
    fake: FakeKV, small_sample: SampleFiles, state_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C during the second batch exits 130; status shows an incomplete run and its counts."""
    original = fake._bulk_put
    calls = 0

    def interrupted(request: httpx.Request, rest: str) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise KeyboardInterrupt
        return original(request, rest)

    monkeypatch.setattr(fake, "_bulk_put", interrupted)
    args = run_args(small_sample, state_path, "--batch-size", "100", "--concurrency", "1")
    result = invoke(fake, "run", *args)
    assert result.exit_code == 130
    assert "interrupted; the state records what was confirmed" in result.stderr
    assert "the run stopped after 100 keys were written; 100 are unconfirmed" in result.stderr
    info = json.loads(invoke(None, "status", "--state", str(state_path), "--json").stdout)
    last = info["last_run"]
    assert (last["complete"], last["error"]) == (False, "interrupted")
    assert last["publish"]["written"]["total"] == len(fake.store) == 100
    assert last["unconfirmed"] == info["keys"]["unconfirmed"] == 100
    human = invoke(None, "status", "--state", str(state_path)).stdout
    assert "INCOMPLETE, written 100" in human
    assert "stopped by: interrupted" in human


@pytest.mark.usefixtures("cf_env")
def test_schema_roll_forward_then_gc(
    fake: FakeKV, small_sample: SampleFiles, state_path: Path, tmp_path: Path
) -> None:
    """``run --schema v4`` adds v4 beside v3; ``gc --keep v4`` then removes every v3 key."""
    assert invoke(fake, "run", *run_args(small_sample, state_path)).exit_code == 0
    v3 = {k for k in fake.store if k.endswith(":v3")}
    assert invoke(fake, "run", *run_args(small_sample, state_path, "--schema", "v4")).exit_code == 0
    v4 = {k for k in fake.store if k.endswith(":v4")}
    assert len(v3) == len(v4) > 5
    fake.store["seg:weird"] = "not a segment key: gc leaves it"
    # The Worker still reads v3 (the repository's wrangler.toml): gc refuses to delete it.
    refused = invoke(fake, "gc", "--keep", "v4", "--state", str(state_path))
    assert refused.exit_code == 2
    assert "the schema the Worker reads (SEGMENT_SCHEMA in wrangler.toml)" in refused.stderr
    assert "--delete-served-schema" in refused.stderr
    assert v3 <= set(fake.store)
    assert fake.count("POST bulk/delete") == 0
    # Once the Worker reads v4, gc deletes v3.
    switched = wrangler_toml(tmp_path, "v4")
    result = invoke(
        fake, "gc", "--keep", "v4", "--state", str(state_path), "--wrangler", switched, "--json"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["deleted"] == len(v3)
    assert not any(k.endswith(":v3") for k in fake.store)
    assert v4 <= set(fake.store)
    assert "seg:weird" in fake.store
    with State(state_path) as state:
        assert "seg:v3" not in state.counts()


@pytest.mark.usefixtures("cf_env")
def test_publish_shell_writes_copy_before_pointer(fake: FakeKV, tmp_path: Path) -> None:
    """The last-known-good copy is written first, then the pointer moves to it."""
    shell = tmp_path / "shell.html"
    shell.write_text("<html><body><!--edgeshelf:shelf--></body></html>")
    result = invoke(
        fake, "publish-shell", "--name", "home", "--file", str(shell), "--version", "2025.1"
    )
    assert result.exit_code == 0, result.output
    assert decode_shell_copy(fake.store["shell:home:2025.1"]) == ShellCopy(shell.read_text(), ())
    assert decode_shell_pointer(fake.store["shell:home"]) == {"version": "2025.1", "path": "/"}
    bodies = [url for route, url in fake.requests if route == "PUT bulk"]
    assert len(bodies) == 2
    assert "no headers kept with the copy" in result.stderr


CSP = "default-src 'self'; img-src https://i.ytimg.com"
SHELL = "<html><body><div data-edgeshelf-slot></div></body></html>"


def publish(fake: FakeKV, *args: str, origin: httpx.MockTransport | None = None) -> Result:
    obj: dict[str, Any] = {"transport": fake.transport()}
    if origin is not None:
        obj["origin_transport"] = origin
    base = ["publish-shell", "--name", "home", "--version", "v1", *args]
    return CliRunner().invoke(main, base, obj=obj, catch_exceptions=False)


@pytest.mark.usefixtures("cf_env")
def test_publish_shell_keeps_the_headers_given(fake: FakeKV, tmp_path: Path) -> None:
    """Each --header is stored with the copy, as the Worker will serve it."""
    shell = tmp_path / "shell.html"
    shell.write_text(SHELL)
    result = publish(
        fake, "--file", str(shell), "--header", f"Content-Security-Policy: {CSP}",
        "--header", "Link: </a.css>; rel=preload", "--header", "Link: </b.js>; rel=preload",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert decode_shell_copy(fake.store["shell:home:v1"]) == ShellCopy(
        SHELL,
        (
            ("content-security-policy", CSP),
            ("link", "</a.css>; rel=preload"),
            ("link", "</b.js>; rel=preload"),
        ),
    )
    assert "headers: content-security-policy, link" in result.stdout
    assert "warning" not in result.stderr


@pytest.mark.usefixtures("cf_env")
@pytest.mark.parametrize(
    ("header", "needle"),
    [("Set-Cookie: a=1", "'Set-Cookie': not kept with a shell"),
     ("Vary: Accept", "'Vary': not kept with a shell"), ("no colon", "expected 'Name: value'"),
     ("Bad Name: x", "'Bad Name': not a well-formed header")],
)  # fmt: skip
def test_publish_shell_refuses_a_header_the_worker_would_drop(
    fake: FakeKV, tmp_path: Path, header: str, needle: str
) -> None:
    """A header the Worker would not serve is refused by name (exit 2) before any request."""
    shell = tmp_path / "shell.html"
    shell.write_text(SHELL)
    result = publish(fake, "--file", str(shell), "--header", header)
    assert result.exit_code == 2
    assert needle in result.stderr
    assert fake.requests == []


@pytest.mark.usefixtures("cf_env")
def test_publish_shell_from_origin_keeps_the_sites_headers(fake: FakeKV) -> None:
    """--from-origin stores the origin's page with its kept headers, --header overriding one."""

    def origin(request: httpx.Request) -> httpx.Response:
        assert "authorization" not in request.headers, "the API token never goes to the origin"
        return httpx.Response(200, content=SHELL.encode(), headers=[
            ("content-type", "text/html"), ("content-security-policy", CSP),
            ("x-frame-options", "SAMEORIGIN"), ("set-cookie", "s=1"), ("etag", '"1"'),
        ])  # fmt: skip

    result = publish(
        fake, "--from-origin", "https://origin.test/", "--header", "X-Frame-Options: DENY",
        origin=httpx.MockTransport(origin),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    copy = decode_shell_copy(fake.store["shell:home:v1"])
    assert copy == ShellCopy(SHELL, (("content-security-policy", CSP), ("x-frame-options", "DENY")))
    assert "left out content-length, content-type, etag, set-cookie" in result.stderr


@pytest.mark.usefixtures("cf_env")
def test_publish_shell_from_a_failing_origin_writes_nothing(fake: FakeKV) -> None:
    """An origin that does not answer 200 with HTML is refused (exit 3): nothing is written."""
    failing = httpx.MockTransport(lambda _r: httpx.Response(502, text="bad gateway"))
    result = publish(fake, "--from-origin", "https://origin.test/", origin=failing)
    assert result.exit_code == 3
    assert "https://origin.test/: the origin answered 502" in result.stderr
    assert fake.requests == []


@pytest.mark.usefixtures("cf_env")
def test_publish_shell_needs_exactly_one_page(fake: FakeKV, tmp_path: Path) -> None:
    """Neither --file nor --from-origin, or both, is a usage error (exit 2)."""
    shell = tmp_path / "shell.html"
    shell.write_text(SHELL)
    neither = publish(fake)
    both = publish(fake, "--file", str(shell), "--from-origin", "https://origin.test/")
    assert (neither.exit_code, both.exit_code) == (2, 2)
    assert "--file F or with --from-origin URL" in neither.stderr
    assert "not both" in both.stderr
    assert fake.requests == []


@pytest.mark.usefixtures("cf_env")
def test_publish_shell_existing_moves_only_the_pointer(fake: FakeKV, tmp_path: Path) -> None:
    """--existing reads the version's copy back and writes the pointer alone."""
    shell = tmp_path / "shell.html"
    for version in ("v1", "v2"):
        shell.write_text(SHELL.replace("<body>", f"<body>{version}"))
        assert invoke(
            fake, "publish-shell", "--name", "home", "--file", str(shell), "--version", version,
            "--header", f"Content-Security-Policy: {CSP}",
        ).exit_code == 0  # fmt: skip
    copies = {k: v for k, v in fake.store.items() if k.startswith("shell:home:")}
    fake.requests.clear()
    result = publish(fake, "--existing")
    assert result.exit_code == 0, result.output
    assert decode_shell_pointer(fake.store["shell:home"]) == {"version": "v1", "path": "/"}
    assert {k: v for k, v in fake.store.items() if k.startswith("shell:home:")} == copies
    assert [route for route, _ in fake.requests] == ["GET values", "PUT bulk"]
    assert "shell:home -> v1: the copy already in shell:home:v1" in result.stdout
    assert "headers: content-security-policy" in result.stdout


@pytest.mark.usefixtures("cf_env")
@pytest.mark.parametrize(
    ("stored", "needle"),
    [
        (None, "no copy of version 'v1'"),
        ('{"format": 99}', "not a shell copy the Worker can serve"),
    ],
)
def test_publish_shell_existing_refuses_a_missing_or_unusable_copy(
    fake: FakeKV, stored: str | None, needle: str
) -> None:
    """A version with no copy, or one the Worker could not serve, is refused (exit 3)."""
    fake.store["shell:home"] = '{"path":"/","version":"v0"}'
    if stored is not None:
        fake.store["shell:home:v1"] = stored
    result = publish(fake, "--existing")
    assert result.exit_code == 3
    assert f"shell:home:v1: {needle}" in result.stderr
    assert fake.store["shell:home"] == '{"path":"/","version":"v0"}'
    assert fake.count("PUT bulk") == 0


@pytest.mark.usefixtures("cf_env")
def test_publish_shell_existing_takes_no_page(fake: FakeKV, tmp_path: Path) -> None:
    """--existing with --file, --from-origin or --header is a usage error (exit 2), sent nowhere."""
    shell = tmp_path / "shell.html"
    shell.write_text(SHELL)
    for extra in (["--file", str(shell)], ["--from-origin", "https://origin.test/"],
                  ["--header", "X-A: 1"]):  # fmt: skip
        result = publish(fake, "--existing", *extra)
        assert result.exit_code == 2
        assert "--existing sends no page" in result.stderr
    assert fake.requests == []


@pytest.mark.usefixtures("cf_env")
def test_publish_shell_pointer_waits_for_a_confirmed_copy(fake: FakeKV, tmp_path: Path) -> None:
    """If the copy cannot be written the pointer is not moved."""
    shell = tmp_path / "shell.html"
    shell.write_text("<html></html>")
    fake.refuse_keys = {"shell:home:v2"}
    result = invoke(
        fake, "publish-shell", "--name", "home", "--file", str(shell), "--version", "v2"
    )
    assert result.exit_code == 5
    assert "shell:home" not in fake.store


@pytest.mark.usefixtures("cf_env")
@pytest.mark.parametrize(
    ("args", "needle"),
    [(["--name", "Home!"], "shell name"), (["--version", "a b"], "shell version"),
     (["--path", "//evil"], "absolute path")],
)  # fmt: skip
def test_publish_shell_validates_key_parts(
    fake: FakeKV, tmp_path: Path, args: list[str], needle: str
) -> None:
    """Name, version and path go through the schema module's validators (exit 2)."""
    shell = tmp_path / "s.html"
    shell.write_text("<html></html>")
    base = {"--name": "home", "--version": "v1", "--path": "/"}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    flat = [x for kv in base.items() for x in kv]
    result = invoke(fake, "publish-shell", "--file", str(shell), *flat)
    assert result.exit_code == 2
    assert needle in result.stderr
    assert fake.requests == []


def test_publish_shell_refuses_oversized_and_non_utf8(
    cf_env: dict[str, str], fake: FakeKV, tmp_path: Path
) -> None:
    """A shell over 5 MiB, or not UTF-8, is refused before any request (exit 3)."""
    big = tmp_path / "big.html"
    big.write_bytes(b"<p>" * (2 << 20))
    latin = tmp_path / "latin.html"
    latin.write_bytes("<p>caf\xe9</p>".encode("latin-1"))
    for path in (big, latin):
        result = invoke(
            fake, "publish-shell", "--name", "home", "--file", str(path), "--version", "1"
        )
        assert result.exit_code == 3
    assert fake.requests == []


@pytest.mark.usefixtures("cf_env")
def test_status_reports_keys_and_last_run(
    fake: FakeKV, small_sample: SampleFiles, state_path: Path
) -> None:
    """``status`` shows the target, key counts and the last run's outcome."""
    invoke(fake, "run", *run_args(small_sample, state_path))
    info = json.loads(invoke(None, "status", "--state", str(state_path), "--json").stdout)
    assert info["keys"]["u"] == 600
    assert info["last_run"]["complete"] is True
    assert info["target"].endswith("/acc0123/ns0123")


def test_status_without_state_exits_2(tmp_path: Path) -> None:
    """No state file yet is a clear message, not a fresh empty database."""
    result = invoke(None, "status", "--state", str(tmp_path / "none.sqlite"))
    assert result.exit_code == 2
    assert not (tmp_path / "none.sqlite").exists()


def test_sample_command_writes_files(tmp_path: Path) -> None:
    """``sample`` writes events and catalog in the chosen format."""
    result = invoke(None, "sample", "--out", str(tmp_path), "--users", "20", "--videos", "10",
                    "--events", "100", "--format", "csv")  # fmt: skip
    assert result.exit_code == 0
    assert (tmp_path / "events.csv").exists()
    assert (tmp_path / "catalog.csv").exists()


@pytest.mark.usefixtures("cf_env")
def test_unchanged_keys_are_refreshed_on_the_runs_clock(
    fake: FakeKV, small_sample: SampleFiles, state_path: Path
) -> None:
    """With --now, expiry is recorded on that clock: segments refresh after 3 h, profiles 15 d."""
    assert invoke(fake, "run", *run_args(small_sample, state_path)).exit_code == 0

    def plan_at(now: int) -> dict[str, Any]:
        args = run_args(small_sample, state_path)
        args[args.index("--now") + 1] = str(now)
        write: dict[str, Any] = json.loads(invoke(None, "plan", *args, "--json").stdout)["plan"][
            "write"
        ]
        return write

    assert plan_at(NOW + 3_600)["total"] == 0
    assert plan_at(NOW + 3 * 3_600 + 60)["refresh"]["profiles"] == 0
    assert plan_at(NOW + 3 * 3_600 + 60)["refresh"]["segments"] > 0
    assert plan_at(NOW + 16 * 86_400)["refresh"]["profiles"] == 600


@pytest.mark.usefixtures("cf_env")
def test_truncated_input_cannot_wipe_kv(fake: FakeKV, tmp_path: Path) -> None:
    """A run that would delete most published keys is refused (exit 3) unless allowed."""
    files = write_sample(tmp_path / "full", users=1_500, videos=100, events=15_000, seed=4)
    state = tmp_path / "state.sqlite"
    assert invoke(fake, "run", *run_args(files, state)).exit_code == 0
    before = dict(fake.store)
    truncated = write_sample(tmp_path / "cut", users=1_500, videos=100, events=40, seed=4)
    cut = [a if a != str(files.events) else str(truncated.events) for a in run_args(files, state)]
    refused = invoke(fake, "run", *cut)
    assert refused.exit_code == 3
    assert "is the input complete?" in refused.stderr
    assert fake.store == before
    assert "mass_delete" in invoke(None, "plan", *cut, "--json").stdout
    hint = re.search(r"rerun with --max-delete (\d\.\d\d)$", refused.stderr.strip())
    assert hint is not None, refused.stderr
    hinted = json.loads(invoke(None, "plan", *cut, "--max-delete", hint.group(1), "--json").stdout)
    assert hinted["plan"]["mass_delete"] is None  # the value printed is one that passes
    allowed = invoke(fake, "run", *cut, "--max-delete", "1")
    assert allowed.exit_code == 0
    assert len(fake.store) < 100


def test_timeout_option_bounds_the_wait_for_a_silent_api(
    small_sample: SampleFiles, state_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With --timeout 0.3 an API that never answers costs seconds, not minutes: exit 1."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)  # accepts into the backlog, never answers
        port = server.getsockname()[1]
        for name, value in {
            "CLOUDFLARE_API_TOKEN": TOKEN,
            "CLOUDFLARE_ACCOUNT_ID": "acc0123",
            "EDGESHELF_KV_NAMESPACE_ID": "ns0123",
            "CLOUDFLARE_BASE_URL": f"http://127.0.0.1:{port}/client/v4",
        }.items():
            monkeypatch.setenv(name, value)
        started = time.monotonic()
        result = invoke(None, "run", *run_args(small_sample, state_path), "--timeout", "0.3")
        elapsed = time.monotonic() - started
    assert result.exit_code == 1, result.output
    assert "timed out (ReadTimeout)" in result.stdout
    assert elapsed < 30


def test_cli_start_leaves_the_report_libraries_unloaded() -> None:
    """Importing the CLI loads neither scipy nor matplotlib: only `report` pays for them."""
    code = (
        "import sys, builder.cli; "
        "print(sorted(m for m in ('scipy', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
