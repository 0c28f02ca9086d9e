"""Security: no key from unvalidated input, the token never shown, cookie flags, no secret in git.

Key injection is checked with traps: the keys a careless implementation would read for a hostile
cookie or profile hold a valid profile or segment pointing at "trap" videos. The Worker must
serve the request's own fallback shelf instead, and its JSON log must show the segment and the
reads that fallback implies (``visitor``, ``profile_read``, ``segment``, ``segment_reads``).
"""

from __future__ import annotations

import http.server
import json
import os
import pty
import re
import secrets
import select
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
import pytest

from builder.sample import write_sample
from edgeshelf import schema
from edgeshelf.profile import audience_for
from edgeshelf.segments import chain_for
from tests.reliability.conftest import scale
from tests.runtime.helpers import AUDIENCE_SET, MINTED, Audience, fresh_audience, put_segment
from tests.support.pages import shelf_from_html
from tests.support.rawhttp import RawResponse, send

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from localstack import LocalStack

    from builder.sample import SampleFiles

pytestmark = pytest.mark.runtime

ROOT = Path(__file__).resolve().parents[2]


# --- the Worker's log, read from where the last look ended ------------------------------------


class WorkerLog:
    """New ``edgeshelf.request`` records in the stack's log since the last call."""

    def __init__(self, stack: LocalStack) -> None:
        self.path = stack.log_path
        self.offset = self.path.stat().st_size

    def next(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next request record (waits for workerd to flush it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
            for line in data.split(b"\n")[:-1]:  # complete lines only
                self.offset += len(line) + 1
                start = line.find(b'{"event":"edgeshelf.request"')
                if start >= 0:
                    record: dict[str, Any] = json.loads(line[start:])
                    return record
            time.sleep(0.05)
        raise AssertionError("the Worker logged no request record")


def kv_put_any(stack: LocalStack, key: str, value: str) -> None:
    """Write any key (percent-encoded into the URL) through the local API."""
    url = f"{stack.kv_base}/values/{quote(key, safe='')}"
    r = httpx.put(url, content=value.encode(), headers=stack.auth, timeout=30)
    assert r.status_code == 200, (key, r.text)


def usable_key(key: str) -> bool:
    """KV accepts it: not empty, not ``.``/``..``, at most 512 bytes."""
    return key not in ("", ".", "..") and len(key.encode()) <= 512


@dataclass
class Trap:
    """An audience nobody should reach: its profile, exact and default segments list trap IDs."""

    aud: Audience
    ids: list[str]

    @classmethod
    def make(cls, stack: LocalStack) -> Trap:
        aud = fresh_audience()
        ids = [f"trap{uuid.uuid4().hex[:8]}{i}" for i in range(3)]
        put_segment(stack, aud.exact, ids)
        put_segment(stack, aud.lang_default, ids)
        return cls(aud, ids)

    def profile(self, **override: object) -> dict[str, object]:
        return {
            "fv": 1, "country": self.aud.country, "lang": self.aud.lang,
            "affinity_bucket": self.aud.bucket, "recent_categories": [self.aud.bucket],
            "last_seen": int(time.time()), **override,
        }  # fmt: skip

    def plant(self, stack: LocalStack, key: str) -> None:
        """A trap profile under ``key`` (segment keys already hold trap shelves)."""
        if usable_key(key) and not key.startswith("seg:"):
            kv_put_any(stack, key, json.dumps(self.profile()))


@dataclass
class Own:
    """The request's own audience (cf.country + Accept-Language) and its default shelf."""

    aud: Audience
    ids: list[str]

    @classmethod
    def make(cls, stack: LocalStack) -> Own:
        aud = fresh_audience()
        ids = [f"own{uuid.uuid4().hex[:8]}{i}" for i in range(3)]
        put_segment(stack, aud.lang_default, ids)
        return cls(aud, ids)

    def headers(self) -> list[tuple[bytes, bytes]]:
        blob = json.dumps({"country": self.aud.country.upper()}).encode()
        return [(b"MF-CF-Blob", blob), (b"Accept-Language", self.aud.lang.encode())]


def page_shelf(r: RawResponse) -> dict[str, Any]:
    found = shelf_from_html(r.body.decode("utf-8", "replace"))
    assert found is not None, r.body[:300]
    return found


def assert_own_fallback(
    r: RawResponse, log: dict[str, Any], own: Own, trap: Trap, case: str, profile_read: str
) -> None:
    """The page shows the request's own default shelf, and the log the reads that implies."""
    body = r.body.decode("utf-8", "replace")
    assert r.status == 200, case
    for vid in trap.ids:
        assert vid not in body, (case, "trap shelf served")
    assert page_shelf(r)["ids"] == own.ids, case
    assert page_shelf(r)["segment"] == own.aud.lang_default, case
    got = {k: log[k] for k in ("profile", "profile_read", "segment", "segment_reads")}
    want = {
        "profile": "request",
        "profile_read": profile_read,
        "segment": own.aud.lang_default,
        "segment_reads": ["hit"],
    }
    assert got == want, case


# --- key injection through the cookie --------------------------------------------------------

COOKIE_ATTACKS: list[Callable[[str, str, Trap], bytes]] = [
    lambda u, v, t: b"../u:x",
    lambda u, v, t: f"{u}:seg:global:v3".encode(),
    lambda u, v, t: f"{u}:seg:{t.aud.exact}:v3".encode(),
    lambda u, v, t: f"{u}/../{v}".encode(),
    lambda u, v, t: f"u:{u}".encode(),
    lambda u, v, t: f"seg:{t.aud.exact}:v3".encode(),
    lambda u, v, t: f"%75%3a{u}".encode(),
    lambda u, v, t: f"{u}%00".encode(),
    lambda u, v, t: f"{u}\x7fx".encode(),
    lambda u, v, t: f'"{u}:x"'.encode(),
    lambda u, v, t: u.upper().encode(),
    lambda u, v, t: f"{u}\u202e".encode(),
    lambda u, v, t: (u + "," + v).encode(),
    lambda u, v, t: ("x" * 600 + u).encode(),
]


def test_cookie_key_injection_reads_no_unexpected_key(stack, record):
    """Hostile es_uid values never reach a KV key: no profile read, the own shelf is served."""
    for i, attack in enumerate(COOKIE_ATTACKS):
        u, v = str(uuid.uuid4()), str(uuid.uuid4())
        trap, own = Trap.make(stack), Own.make(stack)
        value = attack(u, v, trap)
        text = value.decode("utf-8", "replace")
        # What careless code might read: u:<value>, the value itself, or the valid UUID in it.
        for key in {f"u:{text}", text, f"u:{text.strip(chr(34))}", f"u:{u}", f"u:{v}"}:
            trap.plant(stack, key)
        log = WorkerLog(stack)
        r = send(stack.worker, b"GET", b"/", [(b"Cookie", b"es_uid=" + value), *own.headers()])
        case = f"cookie attack {i}: {value[:80]!r}"
        assert r.status == 200, (case, r.status, r.body[:200])
        entry = log.next()
        assert entry["visitor"] == "minted", case
        assert_own_fallback(r, entry, own, trap, case, profile_read="skipped")
        minted = MINTED.fullmatch(r.header("set-cookie")[0])
        assert minted is not None, case
        assert minted.group(1) not in (u, v), case
    # The control: the same trap under a well-formed cookie is read, so the traps would show.
    trap, own = Trap.make(stack), Own.make(stack)
    u = str(uuid.uuid4())
    trap.plant(stack, f"u:{u}")
    log = WorkerLog(stack)
    r = send(stack.worker, b"GET", b"/", [(b"Cookie", f"es_uid={u}".encode()), *own.headers()])
    assert page_shelf(r)["ids"] == trap.ids
    assert log.next()["profile_read"] == "hit"
    rolled = MINTED.fullmatch(r.header("set-cookie")[0])
    assert rolled is not None
    assert rolled.group(1) == u
    record("security", "key injection through the es_uid cookie (traps at the keys it names)",
           load=f"{len(COOKIE_ATTACKS) + 1} requests", faults="../, u:, seg:, %-escapes, DEL, "
           "quotes, case, bidi, lists, 600-byte values", five_xx=0, keys_lost="n/a",
           notes="each minted a new ID, read no profile and served its own default shelf; a "
           "well-formed control cookie reached its trap profile",
    )  # fmt: skip


# --- key injection through stored profile fields ---------------------------------------------


def _profile_attacks(t: Trap) -> list[dict[str, object]]:
    seg = t.aud.exact
    return [
        {"affinity_bucket": "x:v3"},
        {"affinity_bucket": f"{t.aud.bucket}:v3"},
        {"affinity_bucket": "../global"},
        {"affinity_bucket": "default:v3\nseg:global"},
        {"affinity_bucket": t.aud.bucket.upper()},
        {"country": f"{seg}:v3\u0000"},
        {"country": "us-en-shorts:v3\u0000"},
        {"country": t.aud.country.upper()},
        {"country": f"{t.aud.country}:"},
        {"lang": "../../shell:home"},
        {"lang": f"{t.aud.lang}:v3"},
        {"lang": f"{t.aud.lang}-{t.aud.bucket}"},
        {"recent_categories": ["seg:global:v3"]},
        {"fv": 2},
        {"country": 7},
    ]


def test_profile_field_injection_reads_no_unexpected_key(stack, record):
    """Stored profile fields that try to steer to another key reach KV only through the shared
    normalisers: the shelf served is the one the normalised audience names, never a trap
    planted at a key built from the raw field."""
    n = 0
    trap0 = Trap.make(stack)
    for i in range(len(_profile_attacks(trap0))):
        uid = str(uuid.uuid4())
        trap, own = Trap.make(stack), Own.make(stack)
        attack = _profile_attacks(trap)[i]
        text = json.dumps(trap.profile(**attack))
        kv_put_any(stack, schema.profile_key(uid), text)
        # What the Worker must make of it: the one, normalising definition (profile, segments).
        audience = audience_for(text, own.aud.country.upper(), own.aud.lang)
        chain = chain_for(audience, "v3")
        wanted = [f"norm{uuid.uuid4().hex[:8]}{j}" for j in range(2)]
        put_segment(stack, chain[0].segment, wanted)
        # Traps at the keys a careless reader would build from the raw fields.
        raw = json.loads(text)
        country, lang, bucket = (str(raw.get(k)) for k in ("country", "lang", "affinity_bucket"))
        legit = {step.key for step in chain}
        for key in {f"seg:{country}-{lang}-{bucket}:v3", f"seg:{country}-{lang}-default:v3"}:
            if usable_key(key) and key not in legit:
                kv_put_any(stack, key, schema.encode_segment(trap.ids, built_at=1, schema="v3"))
        log = WorkerLog(stack)
        r = send(stack.worker, b"GET", b"/", [(b"Cookie", f"es_uid={uid}".encode()),
                                              *own.headers()])  # fmt: skip
        entry = log.next()
        case = f"profile attack {i}: {attack!r}"
        assert r.status == 200, case
        assert entry["visitor"] == "cookie", case
        assert page_shelf(r)["ids"] == wanted, case
        assert entry["segment"] == chain[0].segment, case
        assert entry["profile"] == audience.source, case
        assert entry["profile_read"] == ("hit" if audience.source == "kv" else "invalid"), case
        assert re.fullmatch(r"[a-z]{2}-[a-z]{2,3}-[a-z0-9_]{1,32}", chain[0].segment), case
        n += 1
    # The control: a trap planted at the valid profile's own key is what it is served.
    uid = str(uuid.uuid4())
    kv_put_any(stack, schema.profile_key(uid), json.dumps(trap0.profile()))
    own = Own.make(stack)
    log = WorkerLog(stack)
    r = send(stack.worker, b"GET", b"/", [(b"Cookie", f"es_uid={uid}".encode()), *own.headers()])
    entry = log.next()
    assert page_shelf(r)["ids"] == trap0.ids
    assert (entry["profile_read"], entry["segment"]) == ("hit", trap0.aud.exact)
    record("security", "key injection through stored profile fields (country, lang, bucket)",
           load=f"{n + 1} requests", faults=f"{n} hostile profiles (':v3', NUL, '../', "
           "newlines, case, wrong types, another format version)", five_xx=0, keys_lost="n/a",
           notes="each read leniently through the shared normalisers (a field that is not "
           "usable falls back on its own; another format version is refused whole); no trap "
           "at a raw-built key was served; a valid control profile reached its own segment",
    )  # fmt: skip


def test_request_signal_injection_reads_no_unexpected_key(stack, record):
    """cf.country and Accept-Language that look like key parts are normalised to unknown."""
    trap = Trap.make(stack)
    attacks = [
        (f"{trap.aud.country.upper()}:V3", f"{trap.aud.lang}:v3"),
        (f"{trap.aud.country}-{trap.aud.lang}-{trap.aud.bucket}", "../seg:global"),
        ("XX\u0000", f"{trap.aud.lang}\t;q=0.9:v3"),
    ]
    for country, lang in attacks:
        log = WorkerLog(stack)
        blob = json.dumps({"country": country}).encode()
        r = send(stack.worker, b"GET", b"/", [(b"MF-CF-Blob", blob),
                                              (b"Accept-Language", lang.encode())])  # fmt: skip
        entry = log.next()
        assert r.status == 200
        for vid in trap.ids:
            assert vid.encode() not in r.body
        assert entry["segment"] in ("xx-xx-default", "global", ""), (country, lang, entry)
    record("security", "key injection through cf.country and Accept-Language",
           load=f"{len(attacks)} requests", faults="':V3', '../', NUL, tab in the signals",
           five_xx=0, keys_lost="n/a", notes="normalised to the unknown xx-xx audience",
    )  # fmt: skip


# --- cookie flags ----------------------------------------------------------------------------


def test_cookie_flags(stack, record):
    """Both cookies are HttpOnly, Secure, SameSite=Lax, Path=/ and host-only: the ID for 400
    days, the audience for AUDIENCE_TTL; none under GPC, none once the audience is carried."""
    checked = 0
    for method in ("GET", "HEAD"):
        for extra in ({}, {"cookie": "theme=dark; es_uid=bogus"}):
            r = httpx.request(method, stack.worker + "/", headers=extra, timeout=30)
            cookies = r.headers.get_list("set-cookie")
            assert len(cookies) == 2, cookies
            assert MINTED.fullmatch(cookies[0]), cookies[0]
            aud = AUDIENCE_SET.fullmatch(cookies[1])
            assert aud is not None, cookies[1]
            assert aud.group(2) == "3600"
            assert all("domain=" not in c.lower() for c in cookies)
            checked += 1
    gpc = httpx.get(stack.worker + "/", headers={"sec-gpc": "1"}, timeout=30)
    assert "set-cookie" not in gpc.headers
    uid = str(uuid.uuid4())
    first = httpx.get(stack.worker + "/", headers={"cookie": f"es_uid={uid}"}, timeout=30)
    rolled, aud_cookie = first.headers.get_list("set-cookie")
    assert MINTED.fullmatch(rolled)
    assert uid in rolled
    aud_value = aud_cookie.split(";", 1)[0]
    returning = httpx.get(
        stack.worker + "/", headers={"cookie": f"es_uid={uid}; {aud_value}"}, timeout=30
    )
    assert "set-cookie" not in returning.headers
    assert returning.headers["cache-control"] == "private, no-store"
    assert returning.headers["vary"] == "Cookie"
    record("security", "cookie flags", load=f"{checked + 3} requests",
           faults="GET/HEAD, junk cookies, GPC, returning visitor", five_xx=0, keys_lost="n/a",
           notes="es_uid and es_aud: HttpOnly; Secure; SameSite=Lax; Path=/; no Domain; ID 400 "
           "days (rolled when es_aud is issued), audience 1 h; none under GPC or for a "
           "returning visitor carrying its audience; pages private, no-store")  # fmt: skip


# --- Sec-GPC with an ID the browser still sends ---------------------------------------------

CLEARED = "es_uid=; Max-Age=0; Path=/; HttpOnly; Secure; SameSite=Lax"
CLEARED_AUD = "es_aud=; Max-Age=0; Path=/; HttpOnly; Secure; SameSite=Lax"
# A well-formed audience cookie's value (its MAC need not verify: GPC never reads it).
AUD_VALUE = "a1.us.en.default.k.0123abcd"
# (the Cookie header for an ID, the Set-Cookie values GPC must answer it with)
GPC_COOKIES: list[tuple[Callable[[str], bytes], list[str]]] = [
    (lambda u: f"es_uid={u}".encode(), [CLEARED]),
    (lambda u: f"theme=dark; es_uid={u}; lang=fr".encode(), [CLEARED]),
    (lambda u: f"es_uid={u}; es_uid={uuid.uuid4()}".encode(), [CLEARED]),
    (lambda u: b"es_uid=not-an-id", [CLEARED]),
    (lambda u: f"es_uid={u}; es_aud={AUD_VALUE}".encode(), [CLEARED, CLEARED_AUD]),
    (lambda u: f"es_aud={AUD_VALUE}".encode(), [CLEARED_AUD]),
]


def test_gpc_clears_an_existing_id_and_reads_no_profile(stack, record):
    """``Sec-GPC: 1`` with an ID or audience cookie clears each with the attributes it was set
    with, reads no profile (a trap profile sits behind each ID) and serves the request's own
    shelf."""
    n = scale(12, 120)
    for i in range(n):
        trap, own = Trap.make(stack), Own.make(stack)
        uid = str(uuid.uuid4())
        trap.plant(stack, schema.profile_key(uid))
        make, cleared = GPC_COOKIES[i % len(GPC_COOKIES)]
        cookie = make(uid)
        log = WorkerLog(stack)
        r = send(stack.worker, b"GET", b"/", [(b"Cookie", cookie), (b"Sec-GPC", b"1"),
                                              *own.headers()])  # fmt: skip
        case = f"GPC with cookie {cookie!r}"
        assert r.header("set-cookie") == cleared, case
        entry = log.next()
        assert entry["visitor"] == "gpc", case
        assert_own_fallback(r, entry, own, trap, case, profile_read="skipped")
    # Without a cookie there is nothing to clear, and nothing is set.
    bare = send(stack.worker, b"GET", b"/", [(b"Sec-GPC", b"1")])
    assert (bare.status, bare.header("set-cookie")) == (200, [])
    # The control: the same kind of ID without GPC reaches its trap profile, so traps would show.
    trap, own = Trap.make(stack), Own.make(stack)
    uid = str(uuid.uuid4())
    trap.plant(stack, schema.profile_key(uid))
    r = send(stack.worker, b"GET", b"/", [(b"Cookie", f"es_uid={uid}".encode()), *own.headers()])
    assert page_shelf(r)["ids"] == trap.ids
    record("security", "Sec-GPC with an existing ID cookie (a trap profile behind each ID)",
           load=f"{n + 2} requests", faults="an ID alone, among other cookies, duplicated, a junk "
           "value, with and without an audience cookie, each with Sec-GPC: 1", five_xx=0,
           keys_lost="n/a",
           notes="each cookie held cleared (Max-Age=0, same Path, HttpOnly, Secure, SameSite), no "
           "profile read, the request's own default shelf served; GPC without a cookie set none; "
           "the control without GPC reached its trap profile",
    )  # fmt: skip


# --- the API token never shown ---------------------------------------------------------------


class _Hostile(http.server.BaseHTTPRequestHandler):
    """An API (or proxy) that quotes the request's Authorization header in its errors."""

    status = 400

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        message = f"Invalid request headers: {self.headers.get('authorization')}"
        body = json.dumps({"success": False, "result": None, "messages": [message],
                           "errors": [{"code": 6003, "message": message}]}).encode()  # fmt: skip
        self.send_response(self.status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


class _Hostile503(_Hostile):
    status = 503


@pytest.fixture
def hostile_api() -> Iterator[Callable[[int], str]]:
    """Start echoing APIs on demand: status -> base URL."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(status: int) -> str:
        handler = _Hostile if status == 400 else _Hostile503
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_port}/client/v4"

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def _run_cli(args: list[str], env: dict[str, str], tty: bool = False) -> str:
    """stdout + stderr of the CLI; with ``tty`` stderr is a terminal, so rich draws progress."""
    cmd = ["uv", "run", "edgeshelf-builder", *args]
    full_env = {**os.environ, **env}
    if not tty:
        p = subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=120,
                           check=False)  # fmt: skip
        return f"[exit {p.returncode}]\n{p.stdout}\n{p.stderr}"
    master, slave = pty.openpty()
    proc = subprocess.Popen(cmd, env=full_env, stdout=slave, stderr=slave)
    os.close(slave)
    out = b""
    while True:
        ready, _, _ = select.select([master], [], [], 120)
        if not ready:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the pty closes when the process exits
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    proc.wait(timeout=60)
    return f"[exit {proc.returncode}]\n{out.decode('utf-8', 'replace')}"


def test_api_token_never_in_output_logs_or_state(stack, hostile_api, tmp_path, record):
    """A canary token stays out of stdout/stderr, progress, the state file and the stack log."""
    files: SampleFiles = write_sample(tmp_path / "data", users=300, videos=60, events=3_000)
    token = "tok-CANARY-" + secrets.token_hex(12)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            refused = closed.getsockname()[1]
        targets = {
            "local API, wrong token (403)": (stack.api, stack.account_id, 5),
            "API echoing the header in a 400": (hostile_api(400), "acc1", 5),
            "API echoing the header in 503s": (hostile_api(503), "acc1", 1),
            "connection refused": (f"http://127.0.0.1:{refused}/client/v4", "acc1", 1),
            "API that never answers": (f"http://127.0.0.1:{silent.getsockname()[1]}/client/v4",
                                       "acc1", 1),
        }  # fmt: skip
        outputs: dict[str, str] = {}
        runs = 0
        for i, (name, (base, account, code)) in enumerate(targets.items()):
            env = {
                "CLOUDFLARE_API_TOKEN": token, "CLOUDFLARE_ACCOUNT_ID": account,
                "EDGESHELF_KV_NAMESPACE_ID": stack.kv_namespace_id, "CLOUDFLARE_BASE_URL": base,
            }  # fmt: skip
            state = tmp_path / f"state{i}.sqlite"
            args = ["run", "--events", str(files.events), "--catalog", str(files.catalog),
                    "--state", str(state), "--min-segment-size", "5", "--attempts", "2",
                    "--timeout", "0.5"]  # fmt: skip
            modes = [("json", ["--json"], False)] + ([("tty", [], True)] if i < 2 else [])
            for mode, extra, tty in modes:
                text = _run_cli(args + extra, env, tty=tty)
                runs += 1
                assert text.startswith(f"[exit {code}]"), (name, mode, text[-1500:])
                outputs[f"{name} ({mode})"] = text
            outputs[f"{name} (status)"] = _run_cli(["status", "--state", str(state)], env)
            runs += 1
            outputs[f"{name} (state file)"] = b"".join(
                p.read_bytes() for p in tmp_path.glob(f"state{i}.sqlite*") if p.is_file()
            ).decode("latin-1")
    outputs["stack log"] = stack.log_text()
    assert "Bearer [redacted]" in outputs["API echoing the header in a 400 (json)"]
    drawn = outputs["local API, wrong token (403) (tty)"]
    # rich drew its progress bars on the terminal
    assert "writing segments" in drawn
    assert "\x1b[" in drawn
    leaks = [where for where, text in outputs.items() if token in text or token[11:] in text]
    record("security", "API token never in output, progress, state or logs (canary token)",
           load=f"{runs} CLI runs against {len(targets)} failing APIs",
           faults=", ".join(targets), five_xx=0, keys_lost="n/a",
           notes=f"canary found in {len(leaks)} of {len(outputs)} outputs (JSON and terminal "
           "runs, status, state file, stack log)")  # fmt: skip
    assert leaks == []


# --- the local API's auth --------------------------------------------------------------------


def test_local_api_rejects_missing_and_wrong_tokens(stack, record):
    """Every route answers 401 without a token, 403 with a wrong one, 400 for non-bearer auth."""
    ns = stack.kv_base
    key = f"sec-auth-{uuid.uuid4().hex}"
    routes = [
        ("GET", f"{stack.api}/accounts/{stack.account_id}/storage/kv/namespaces", None),
        ("GET", f"{ns}/values/{key}", None),
        ("PUT", f"{ns}/values/{key}", b"x"),
        ("DELETE", f"{ns}/values/{key}", None),
        ("GET", f"{ns}/keys", None),
        ("PUT", f"{ns}/bulk", json.dumps([{"key": key, "value": "x"}]).encode()),
        ("POST", f"{ns}/bulk/delete", json.dumps([key]).encode()),
        ("POST", f"{ns}/bulk/get", json.dumps({"keys": [key]}).encode()),
    ]
    root = stack.api.removesuffix("/client/v4")
    control = [("GET", f"{root}/__edgeshelf/stats", None),
               ("POST", f"{root}/__edgeshelf/faults", b'{"rate5xx": 1}'),
               ("POST", f"{root}/__edgeshelf/reset", None)]  # fmt: skip
    before = stack.api_stats()
    auths: list[tuple[dict[str, str], int, int | None]] = [
        ({}, 401, 10001),
        ({"authorization": "Bearer " + stack.token[:-1] + "x"}, 403, 10000),
        ({"authorization": "Bearer"}, 400, 6003),
        ({"authorization": "Basic " + stack.token}, 400, 6003),
        ({"authorization": stack.token}, 400, 6003),
    ]
    sent = 0
    with httpx.Client(timeout=30) as http:
        for headers, status, code in auths:
            for method, url, body in routes + control:
                r = http.request(method, url, headers=headers, content=body)
                sent += 1
                assert r.status_code == status, (method, url, headers, r.text)
                envelope = r.json()
                assert envelope["success"] is False
                assert envelope["errors"][0]["code"] == code, (method, url, r.text)
                assert stack.token not in r.text
    after = stack.api_stats()
    assert (after["writes"], after["deletes"]) == (before["writes"], before["deletes"])
    assert after["config"] == before["config"]  # the fault knobs were not changed
    assert stack.kv_get(key) is None
    record("security", "local API rejects missing, wrong and non-bearer tokens",
           load=f"{sent} requests", faults=f"{len(auths)} bad credentials x "
           f"{len(routes) + len(control)} routes (control plane included)",
           five_xx=0, keys_lost="n/a",
           notes="401/10001, 403/10000, 400/6003; nothing written, knobs unchanged")  # fmt: skip


# --- no secret in the repository -------------------------------------------------------------

SECRET_PATTERNS: dict[str, re.Pattern[str]] = {
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "bearer token": re.compile(r"Bearer\s+([A-Za-z0-9._~+/=-]{20,})"),
    "Cloudflare token or key assigned": re.compile(
        r"(?i)(?:CLOUDFLARE_API_TOKEN|CF_API_TOKEN|CLOUDFLARE_API_KEY|CF_API_KEY|api_token|"
        r"api_key)[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9_-]{30,})"
    ),
    "Cloudflare global API key": re.compile(r"(?i)X-Auth-Key[\"']?\s*[:=]\s*[\"']?([0-9a-f]{37})"),
    "GitHub token": re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{36,})\b"),
    "AWS access key": re.compile(r"\b(AKIA[0-9A-Z]{16})\b"),
}
# The local stack mints "local-<32 hex>" per run; the tests' canary is "tok-CANARY-...".
ALLOWED = re.compile(r"local-[0-9a-f]{32}|tok-CANARY-[A-Za-z0-9-]+")


def find_secrets(text: str) -> list[tuple[str, str]]:
    """(kind, match) for each token-like string in ``text`` that is not allowlisted."""
    found = []
    for kind, pattern in SECRET_PATTERNS.items():
        for m in pattern.finditer(text):
            value = m.group(1) if m.groups() else m.group(0)
            if not ALLOWED.fullmatch(value):
                found.append((kind, m.group(0)[:40]))
    return found


def test_secret_scanner_finds_planted_secrets():
    """The scanner catches each kind of secret (built here, never stored), allows test tokens."""
    planted = [
        "-----BEGIN " + "RSA PRIVATE KEY-----",
        "curl -H 'Authorization: Bearer " + "Zq8" * 10 + "'",
        "CLOUDFLARE_API_TOKEN=" + "aB3_" * 10,
        "X-Auth-Key: " + "0123456789abcdef" * 2 + "01234",
        "gh" + "p_" + "A1" * 18,
        "AKIA" + "ABCDEFGHIJKLMNOP",
    ]
    for text in planted:
        assert find_secrets(text), text
    assert find_secrets("Bearer local-" + "0f" * 16) == []
    assert find_secrets("Bearer tok-CANARY-5f3a9e-never-print-me") == []
    assert find_secrets("Authorization: Bearer $CLOUDFLARE_API_TOKEN") == []


def test_repository_holds_no_secret(record):
    """No tracked file contains a token, key or private key; secret files are git-ignored."""
    names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")  # fmt: skip
    found: list[tuple[str, str, str]] = []
    scanned = 0
    for name in filter(None, names):
        path = ROOT / name
        if not path.is_file():
            continue  # deleted in the working tree
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary
        scanned += 1
        found += [(name, kind, m) for kind, m in find_secrets(data.decode("utf-8", "replace"))]
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", ".dev.vars", ".env", ".edgeshelf/state.sqlite"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    ).stdout.split()  # fmt: skip
    record("security", "no secret in the repository", load=f"{scanned} tracked text files",
           faults=", ".join(SECRET_PATTERNS), five_xx=0, keys_lost="n/a",
           notes=f"{len(found)} found; .dev.vars, .env and .edgeshelf/ git-ignored: "
           f"{len(ignored)}/3")  # fmt: skip
    assert found == []
    assert scanned > 50
    assert sorted(ignored) == [".dev.vars", ".edgeshelf/state.sqlite", ".env"]
