"""The JavaScript peers share edgeshelf's rules: one definition fed from Python, and JS copies that
agree with it on the same inputs (run in workerd, the peers' runtime)."""

from __future__ import annotations

import ast
import json
import random
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bench.peer_rules import peer_rules
from edgeshelf import crawlers, identity, profile, schema, shellrules
from edgeshelf.config import _int

ROOT = Path(__file__).resolve().parents[2]
COMMON = ROOT / "bench" / "workers" / "jscommon.mjs"

# It starts workerd (through Miniflare), like the runtime tests do.
pytestmark = pytest.mark.runtime

# Characters where Python and JavaScript string handling differ: str.isspace() vs trim()
# (\x1c, \x85, \ufeff), case folding (Kelvin sign, long s, dotted I), astral code points.
_ALPHABET = (
    "aAbBgGkKsSxXzZ0159 _-.,;=:\"'*\t\n\r\x0b\x1c\x1f\x85\xa0\u2003\u3000\ufeff"
    "\u212a\u017f\u0130éÉ€😀{}[]/\\"
)
_WORDS = [
    "us",
    "US",
    " jp ",
    "xx",
    "XX",
    "en",
    "en-GB",
    "ja_JP",
    "zh-Hant-TW",
    "Music!",
    "music",
    "__a__",
    "q",
    "q=0.5",
    "1.0",
    "1e0",
    "0_5",
    "Googlebot",
    "googlebot",
    "CUBOT",
    "bingbot/2.0",
    "Discordbot",
    "es_uid",
    "es_aud",
    '"',
    "0d7c3b2a-1111-4222-8333-444455556666",
]


def _text(rng: random.Random, n: int = 24) -> str:
    parts = [
        rng.choice(_WORDS) if rng.random() < 0.3 else rng.choice(_ALPHABET)
        for _ in range(rng.randrange(n))
    ]
    return "".join(parts)


def _value(rng: random.Random, depth: int = 0) -> Any:
    """A random JSON value: scalars of every kind, and containers while shallow."""
    scalars = [
        None,
        True,
        False,
        0,
        1,
        2,
        -1,
        2**53,
        2**53 - 1,
        1763900000,
        1.0,
        0.5,
        1e20,
        rng.choice(_WORDS),
        _text(rng, 8),
        _text(rng, 8),
    ]
    pick = rng.randrange(3 if depth < 2 else 1)
    if pick == 1:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if pick == 2:
        return {_text(rng, 4): _value(rng, depth + 1) for _ in range(rng.randrange(3))}
    return rng.choice(scalars)


def _profile(rng: random.Random) -> str:
    keys = ["fv", "country", "lang", "affinity_bucket", "recent_categories", "last_seen"]
    obj = {k: _value(rng) for k in keys if rng.random() < 0.6}
    for key in ("country", "lang", "affinity_bucket"):
        if key in obj and rng.random() < 0.6:
            obj[key] = rng.choice(_WORDS)
    if rng.random() < 0.5:
        obj["fv"] = 1
    text = json.dumps(obj, ensure_ascii=rng.random() < 0.5)
    # Number spellings json.dumps never writes: Python reads them as floats.
    return text.replace('"fv": 1', rng.choice(['"fv": 1', '"fv": 1.0', '"fv": 1e0', '"fv": 1E0']))


def _segment(rng: random.Random) -> str:
    ids = [rng.choice(["v1", "v-2", "bad id", 3, "v1", _text(rng, 6)]) for _ in range(5)]
    obj = {"ids": ids, "built_at": _value(rng), "version": rng.choice([3, 3.0, "3", 4])}
    return json.dumps(obj).replace('"version": 3', rng.choice(['"version": 3', '"version": 3.0']))


def _headers(rng: random.Random) -> list[list[Any]]:
    names = [
        "Content-Security-Policy",
        "x-origin",
        "set-cookie",
        "ETag",
        "Connection",
        "keep-alive",
        "x-hop",
        " Link ",
        "bad name",
        "x-\u212a",
        "x-ok",
        7,
        "vary",
        "cf-ray",
    ]
    pairs = [[rng.choice(names), _text(rng, 12)] for _ in range(rng.randrange(8))]
    if rng.random() < 0.3:
        pairs.append(["connection", "x-hop, Keep-Alive"])
    if rng.random() < 0.2:
        pairs.append(["x-long", "a" * 8193])
    return pairs


def _copy(rng: random.Random) -> str:
    pick = rng.randrange(5)
    if pick == 0:
        return _text(rng)
    if pick == 1:
        return rng.choice(["", "  {", "\x85{", "\ufeff{", " <html>", "{}", "{"])
    obj: dict[str, Any] = {
        "format": rng.choice([schema.SHELL_COPY_FORMAT, "edgeshelf.shell/0"]),
        "html": rng.choice(["<p>x</p>", "", 5, "😀" * 3]),
        "headers": rng.choice([_headers(rng), {"a": "b"}, [["a"], ["b", "c", "d"]], None]),
    }
    return json.dumps(obj)


def _pointer(rng: random.Random) -> str:
    obj = {
        "version": rng.choice(["v1", "2026-11-24a", "bad version", "", 1, "x" * 65]),
        "path": rng.choice(["/", "/a", "//a", "a", "/a\\b", "/" + "😀" * 200, "/" + "p" * 256]),
    }
    return json.dumps(obj, ensure_ascii=rng.random() < 0.5)


def _cases(rng: random.Random, n: int) -> dict[str, list[list[Any]]]:
    qs = ["0.5", "1", "0", "1.0001", "0_5", ".5", "1.", "nan", "0x1", " 0.3 ", "", "1e0"]

    def accept_language() -> str:
        entries = [
            f"{rng.choice(_WORDS)}{rng.choice(['', ';q=', '; q=', ';Q=', ';x='])}{rng.choice(qs)}"
            for _ in range(rng.randrange(5))
        ]
        return ",".join(entries)

    def cookie() -> str:
        names = ["es_uid", " es_uid", "es_aud", "other", "es_uid "]
        uid = "0d7c3b2a-1111-4222-8333-444455556666"
        values = [f'"{uid}"', uid, uid.upper()]
        return ";".join(
            f"{rng.choice(names)}={rng.choice([*values, _text(rng, 6)])}"
            for _ in range(rng.randrange(4))
        )

    crawler_tokens = list(crawlers.CRAWLER_TOKENS)
    return {
        "normalizeCountry": [[rng.choice([_text(rng, 4), *_WORDS, None, 3])] for _ in range(n)],
        "normalizeLang": [[rng.choice([_text(rng, 6), *_WORDS, None])] for _ in range(n)],
        "normalizeBucket": [[rng.choice([_text(rng, 40), *_WORDS, None])] for _ in range(n)],
        "readProfile": [[_profile(rng)] for _ in range(n)],
        "audienceFor": [
            [
                rng.choice([_profile(rng), None]),
                rng.choice(["US", " jp", "", None, "\u212aR"]),
                rng.choice([accept_language(), None]),
            ]
            for _ in range(n)
        ],
        "bestLanguage": [[accept_language()] for _ in range(n)],
        "decodeSegment": [[_segment(rng), rng.choice(["v3", "v4", "x"])] for _ in range(n)],
        "decodeShellPointer": [[_pointer(rng)] for _ in range(n)],
        "decodeShellCopy": [[_copy(rng)] for _ in range(n)],
        "keptHeaders": [[_headers(rng)] for _ in range(n)],
        "isCrawler": [
            [
                rng.choice(
                    [
                        _text(rng, 30),
                        f"Mozilla/5.0 ({rng.choice(crawler_tokens).upper()}/1.0)",
                        f"x{rng.choice(crawler_tokens).lower()}x",
                        "Mozilla/5.0 (Linux; Android 12; CUBOT P50)",
                        "a" * 1030 + "Googlebot",
                        None,
                    ]
                ),
                rng.random() < 0.1,
            ]
            for _ in range(n)
        ],
        "cookieValues": [[cookie(), rng.choice(["es_uid", "es_aud"])] for _ in range(n)],
        "readUid": [[cookie(), "es_uid"] for _ in range(n)],
        "intVar": [
            [
                rng.choice(
                    ["10", " 7 ", "1_000", "1__0", "-5", "+3", "3.5", "", "x", "99999999", None]
                ),
                60,
                0,
                300,
            ]
            for _ in range(n)
        ],
        "identify": [
            [
                {
                    k: v
                    for k, v in {
                        # A header value the runtime passes on: visible ASCII only.
                        "cookie": "".join(c for c in cookie() if "!" <= c <= "~"),
                        "sec-gpc": rng.choice(["1", "0", "yes", None]),
                        "user-agent": rng.choice(["Googlebot/2.1", "Mozilla/5.0 CUBOT", None]),
                    }.items()
                    if v is not None and rng.random() < 0.8
                },
                rng.choice([None, {}, {"botManagement": {"verifiedBot": rng.choice([True, 1])}}]),
            ]
            for _ in range(n)
        ],
        "pageHeaders": [["text/html; charset=utf-8", [["link", "<a>"], ["x-origin", "s"]]]],
    }


def _stored(text: str) -> dict[str, Any] | None:
    stored = schema.read_profile(text)
    return stored._asdict() if stored is not None else None


def _copy_of(text: str) -> dict[str, Any] | None:
    copy = schema.decode_shell_copy(text)
    return None if copy is None else {"html": copy.html, "headers": list(copy.headers)}


def _identify(headers: dict[str, str], cf: dict[str, Any] | None) -> dict[str, Any]:
    verified = (cf or {}).get("botManagement", {}).get("verifiedBot") is True
    who = identity.identify(
        headers.get("cookie"), headers.get("sec-gpc"), headers.get("user-agent"), verified, "es_uid"
    )
    if who.kind == "minted":
        assert who.uid is not None
        return {
            "kind": who.kind,
            "uid": schema.valid_uid(who.uid),
            "cookies": [c.replace(who.uid, "UID") for c in who.set_cookies],
        }
    return {"kind": who.kind, "uid": who.uid, "cookies": list(who.set_cookies)}


# What the Python definition of each helper the JS peers mirror answers.
_PYTHON: dict[str, Any] = {
    "normalizeCountry": schema.normalize_country,
    "normalizeLang": schema.normalize_lang,
    "normalizeBucket": schema.normalize_bucket,
    "readProfile": _stored,
    "audienceFor": lambda *args: profile.audience_for(*args)._asdict(),
    "bestLanguage": profile.best_language,
    "decodeSegment": schema.decode_segment,
    "decodeShellPointer": schema.decode_shell_pointer,
    "decodeShellCopy": _copy_of,
    "keptHeaders": lambda pairs: list(schema.kept_headers((n, v) for n, v in pairs)),
    "isCrawler": crawlers.is_crawler,
    "cookieValues": identity.cookie_values,
    "readUid": identity.read_uid,
    "intVar": lambda raw, default, lo, hi: _int(raw, default, lo, hi, "X", []),
    "identify": _identify,
    "pageHeaders": lambda ct, kept: shellrules.page_headers(ct, tuple((n, v) for n, v in kept)),
}


def _run_js(cases: dict[str, list[list[Any]]]) -> dict[str, list[Any]]:
    proc = subprocess.run(
        ["node", str(ROOT / "tests" / "bench" / "peer_functions.mjs")],
        input=json.dumps({"rules": peer_rules(), "cases": cases}),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result: dict[str, list[Any]] = json.loads(proc.stdout)
    return result


def _normal(value: Any) -> Any:
    """Python's answer as JSON would carry it (tuples as lists)."""
    return json.loads(json.dumps(value))


def test_js_helpers_answer_like_python() -> None:
    """Every pure helper of jscommon.mjs returns what its Python definition returns, on tricky
    and on seeded random inputs, run in workerd."""
    cases = _cases(random.Random(20261203), 150)
    got = _run_js(cases)
    mismatches = []
    for name, calls in cases.items():
        assert len(got[name]) == len(calls), name
        for args, js in zip(calls, got[name], strict=True):
            want = _normal(_PYTHON[name](*args))
            if js != want:
                mismatches.append(f"{name}{tuple(args)!r}: js {js!r}, python {want!r}")
    assert not mismatches, "\n".join(mismatches[:20])


def _js_constant(name: str) -> str:
    """The source text of a constant jscommon.mjs exports."""
    match = re.search(rf"^export const {name} = (.+?);$", COMMON.read_text(), re.MULTILINE)
    assert match, f"jscommon.mjs exports no {name}"
    return match.group(1)


def _js_regex(name: str) -> str:
    """The body of an anchored regular expression literal, ``/^...$/`` -> ``...``."""
    literal = _js_constant(name)
    assert literal.startswith("/^"), literal
    assert literal.endswith("$/"), literal
    return literal[2:-2]


@pytest.mark.parametrize(
    ("js", "python"),
    [
        ("UID_RE", schema._UID_RE),
        ("VIDEO_ID_RE", schema._VIDEO_ID_RE),
        ("COUNTRY_RE", schema._COUNTRY_RE),
        ("LANG_RE", schema._LANG_RE),
        ("BUCKET_RE", schema._BUCKET_RE),
        ("SCHEMA_RE", schema._SCHEMA_RE),
        ("SHELL_VERSION_RE", schema._SHELL_VERSION_RE),
    ],
)
def test_js_key_formats_are_the_schemas(js: str, python: re.Pattern[str]) -> None:
    """Each key-part format the peers copy is the schema's own regular expression."""
    assert _js_regex(js) == python.pattern


def test_js_limits_are_the_schemas() -> None:
    """The sizes and cookie attributes the peers copy are the Python definitions'."""
    assert _js_constant("MAX_SEGMENT_IDS") == str(schema.MAX_SEGMENT_IDS)
    assert _js_constant("MAX_PROFILE_BYTES") == str(schema.MAX_PROFILE_BYTES)
    assert _js_constant("MAX_SEGMENT_BYTES") == str(schema.MAX_SEGMENT_BYTES)
    assert eval(_js_constant("MAX_SHELL_BYTES")) == schema.MAX_SHELL_BYTES  # noqa: S307  # a literal
    assert eval(_js_constant("COOKIE_MAX_AGE")) == identity.COOKIE_MAX_AGE  # noqa: S307
    assert _js_constant("COOKIE_ATTRIBUTES") == json.dumps(identity._ATTRIBUTES)
    assert _js_constant("NO_POINTER_VERSION") == json.dumps(shellrules.NO_POINTER_VERSION)
    assert _js_constant("MAX_COOKIE_SCAN") == str(identity._MAX_COOKIE_SCAN)
    assert _js_constant("MAX_LANG_ENTRIES") == str(profile._MAX_LANG_ENTRIES)


def _py_constant(module: str, name: str) -> Any:
    """A module-level constant of an FFI module of the Worker (which CPython cannot import)."""
    tree = ast.parse((ROOT / "src" / "edgeshelf" / f"{module}.py").read_text())
    for node in tree.body:
        target: ast.expr
        value: ast.expr | None
        if isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id == name and value is not None:
            return eval(compile(ast.Expression(value), module, "eval"), {})  # noqa: S307
    raise AssertionError(f"src/edgeshelf/{module}.py defines no {name}")


@pytest.mark.parametrize(
    ("js", "module", "python"),
    [
        ("SEGMENT_MEMO_SIZE", "shelves", "_SEGMENT_MEMO_SIZE"),
        ("SHELF_MEMO_SIZE", "shelves", "_READY_MEMO_SIZE"),
        ("PREPARED_MEMO_SIZE", "shell", "_SPLIT_MEMO_SIZE"),
        ("PAGE_BUDGET_CHARS", "split", "_PAGE_BUDGET_CHARS"),
    ],
)
def test_js_peer_memory_bounds_are_the_workers(js: str, module: str, python: str) -> None:
    """The same-algorithm peer keeps as much in isolate memory as edgeshelf's Worker does."""
    source = (ROOT / "bench" / "workers" / "jspeer.mjs").read_text()
    match = re.search(rf"^const {js} = ([^;]+);", source, re.MULTILINE)
    assert match, f"jspeer.mjs defines no {js}"
    assert eval(match.group(1)) == _py_constant(module, python)  # noqa: S307  # a literal


def test_js_html_type_is_the_workers() -> None:
    """The content type the peers give a filled shell is the Worker's."""
    assert _js_constant("HTML_TYPE") == json.dumps(_py_constant("shell", "_HTML_TYPE"))
