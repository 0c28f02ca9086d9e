"""The edge benchmark's visitor-session sections (issue 14): the targets, the KV latency model,
per-page-view results with and without it, page views by kind, and what bounds a missed target.

Every figure comes from ``bench-edge.json`` (its ``sessions`` part, the wrk cells and the FFI
probe); the prose that holds no measurement is in ``bench/notes/sessions.md``.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from statistics import NormalDist
from typing import TYPE_CHECKING, Any, Protocol

from report_common import DASH, LABELS, NAIVE, PEER, X, fmt, note, table, verdict

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from pathlib import Path

ORDER = ["edgeshelf", PEER, NAIVE, "py-floor", "js-floor"]
READ_PATHS = ["edgeshelf", PEER, NAIVE]
SEGMENTS = {
    "new-first": "new visitor, first view (an ID is minted)",
    "returning-first": "returning visitor, first view (ID, no audience cookie yet)",
    "new-later": "new visitor, later views",
    "returning-later": "returning visitor, later views (with es_aud where issued)",
}
RETURNING = ("returning-first", "returning-later")
MODES = {"none": "none (local KV)", "model": "production model"}
SHORT = {
    "edgeshelf": "edgeshelf",
    PEER: "JS same\nalgorithm",
    NAIVE: "JS naive",
    "py-floor": "Python\nfloor",
    "js-floor": "JS floor",
}
TARGET_KNOWN_COLD = 1.10
TARGET_LATENCY_RATIO = 20.0
TARGET_RETURNING_READS = 150.0
ORIGINAL_RETURNING_READS = 2000
TARGET_CPU_MS = 1.0
MS_PER_TICK = 10.0  # /proc CPU ticks (CLK_TCK 100)
Z95 = NormalDist().inv_cdf(0.95)

Run = dict[str, Any]


class WrkCells(Protocol):
    """What the session sections read of the wrk tables (``report.Results``)."""

    sizes: list[str]

    def p50_ms(self, target: str, visitor: str, size: str, conns: int = 1) -> float | None: ...


class Sessions:
    """The session cells of one run: medians over repetitions, KV reads summed over them."""

    def __init__(self, data: dict[str, Any]) -> None:
        s = data["sessions"]
        self.params: dict[str, Any] = s["params"]
        self.sources: list[str] = s["sources"]
        self.phases: dict[str, dict[str, Any]] = {
            mode: phase for mode, phase in s["modes"].items() if mode in MODES
        }
        self.audience: dict[str, Any] = data["meta"].get("audience", {})
        self.groups: dict[tuple[str, str, str], list[Run]] = defaultdict(list)
        for mode, phase in self.phases.items():
            for run in phase["runs"]:
                self.groups[(mode, run["size"], run["target"])].append(run)
        self.sizes: list[str] = list(self.params["sizes"])
        self.targets = [t for t in ORDER if any(key[2] == t for key in self.groups)]

    def med(self, mode: str, size: str, target: str, field: str) -> float | None:
        runs = self.groups.get((mode, size, target), [])
        values = [r[field] for r in runs if r.get(field) is not None]
        return statistics.median(values) if values else None

    def ms(self, mode: str, size: str, target: str, field: str) -> float | None:
        v = self.med(mode, size, target, field)
        return None if v is None else v / 1000

    def seg_med(self, mode: str, size: str, target: str, seg: str, field: str) -> float | None:
        runs = self.groups.get((mode, size, target), [])
        values = [
            r["segments"][seg][field] for r in runs if r["segments"][seg].get(field) is not None
        ]
        return statistics.median(values) if values else None

    def totals(
        self, mode: str, target: str, segments: Iterable[str], sizes: Iterable[str] | None = None
    ) -> dict[str, float]:
        """Views, views with es_aud, cold and hot reads and CPU ticks, summed over repetitions."""
        out = dict.fromkeys(("views", "with_aud", "cold", "hot", "ticks"), 0.0)
        segs = list(segments)
        for size in sizes if sizes is not None else self.sizes:
            for run in self.groups.get((mode, size, target), []):
                for seg in segs:
                    s = run["segments"][seg]
                    out["views"] += s["views"]
                    out["with_aud"] += s["with_aud"]
                    out["cold"] += s["kv"]["cold"]
                    out["hot"] += s["kv"]["hot"]
                    out["ticks"] += s["workerd_cpu_ticks"]
        return out

    def per_1000(
        self,
        mode: str,
        target: str,
        segments: Iterable[str],
        classes: tuple[str, ...] = ("cold", "hot"),
        sizes: Iterable[str] | None = None,
    ) -> float | None:
        t = self.totals(mode, target, segments, sizes)
        return sum(t[c] for c in classes) * 1000 / t["views"] if t["views"] else None

    def cold_share(self, mode: str, size: str, target: str) -> float | None:
        """Share of page views that awaited a per-user (cold) read."""
        t = self.totals(mode, target, SEGMENTS, [size])
        return t["cold"] / t["views"] if t["views"] else None

    def model(self) -> dict[str, Any] | None:
        phase = self.phases.get("model")
        return None if phase is None else phase["model"]


def cold_quantile_ms(model: dict[str, Any], q: float) -> float:
    """The q-quantile of the model's cold-read wait (log-normal from median and p95)."""
    p50, p95 = model["cold"]["p50_ms"], model["cold"]["p95_ms"]
    if p50 <= 0 or p95 <= p50:
        return float(p50)
    sigma = math.log(p95 / p50) / Z95
    return float(min(model["cap_ms"], p50 * math.exp(sigma * NormalDist().inv_cdf(q))))


def await_us(data: dict[str, Any]) -> float | None:
    """What awaiting one JS promise costs in a Python Worker here (the FFI probe)."""
    ops = ((data.get("profile") or {}).get("ffi") or {}).get("ops", [])
    return next((op["us_per_op"] for op in ops if op["name"] == "await_js_promise"), None)


# --- the targets ---------------------------------------------------------------------------------


def _audience_note(s: Sessions) -> str:
    a = s.audience
    if a.get("edgeshelf_issues") is False and a.get("ttl") == 0:
        return (
            "edgeshelf's Worker at this commit issues no audience cookie, so every Worker ran "
            "with `AUDIENCE_TTL=0` (the design before issue 14)"
        )
    return f"every Worker ran with `AUDIENCE_TTL={a.get('ttl', '?')}`"


def _no_cookie(s: Sessions) -> str:
    return f"edgeshelf set no `es_aud` in this run ({_audience_note(s)})"


def _bound_fresh(s: Sessions) -> list[str]:
    t = s.totals("model", "edgeshelf", ["returning-later"])
    if not t["with_aud"]:
        reads = s.per_1000("model", "edgeshelf", ["returning-later"], ("cold",))
        return [
            f"{_no_cookie(s)}, so no later page view of a returning visitor carried one and "
            f"each read the profile ({fmt(reads, '.0f')} profile reads per 1,000 such views)."
        ]
    return [
        f"edgeshelf read the profile {t['cold']:.0f} times on {t['with_aud']:.0f} later page "
        "views of returning visitors that carried `es_aud`: a valid, matching cookie did not "
        "stand in for the profile (its log line's `audience` field says which)."
    ]


def _bound_known_cold(s: Sessions | None, r: WrkCells, data: dict[str, Any]) -> list[str]:
    lines = []
    if s is not None:
        known = s.totals("none", "edgeshelf", ["returning-later"])
        cold = s.totals("none", "edgeshelf", ["new-first"])
        if known["views"] and cold["views"]:
            lines.append(
                "A known visitor's page view awaited "
                f"{(known['cold'] + known['hot']) / known['views']:.2f} KV reads (the profile: "
                f"{known['cold'] / known['views']:.2f}), a new visitor's first view "
                f"{(cold['cold'] + cold['hot']) / cold['views']:.2f} (sessions without injected "
                "latency, the table *page views by kind*)."
            )
    cost = await_us(data)
    if cost is not None:
        lines.append(
            f"Awaiting one JS promise costs a Python Worker about {cost:.0f} µs here (the "
            "single-operation table below): a profile read per known view is what the ratio "
            "pays for; without it both kinds of view await nothing."
        )
    return [" ".join(lines)] if lines else []


def _bound_ratio(s: Sessions, size: str) -> list[str]:
    model = s.model()
    f = s.cold_share("model", size, "edgeshelf")
    if model is None or f is None:
        return []
    if f >= 0.5:
        return [
            f"{size}: {f:.0%} of edgeshelf's page views awaited a per-user read, so its p50 is at "
            f"least the model's median cold read ({model['cold']['p50_ms']:g} ms)."
        ]
    local = s.ms("none", size, "edgeshelf", "p50_us")
    naive = s.ms("model", size, NAIVE, "p50_us")
    floor = s.ms("model", size, "py-floor", "p50_us")
    best = naive / floor if naive is not None and floor else None
    return [
        f"{size}: only {f:.0%} of edgeshelf's page views awaited a per-user read, so its p50 is "
        f"a view that awaited none: its local cost (p50 {fmt(local)} ms without injected "
        f"latency). Below that is the Python passthrough floor, which reads no KV at all (p50 "
        f"{fmt(floor)} ms here: entering a Python Worker, loopback and the harness's HTTP "
        f"client): no Python Worker could do better than about {fmt(best, '.1f', X)} against "
        f"the naive peer's {fmt(naive)} ms."
    ]


def _bound_p95(s: Sessions, size: str) -> list[str]:
    model = s.model()
    f = s.cold_share("model", size, "edgeshelf")
    naive = s.ms("model", size, NAIVE, "p50_us")
    if model is None or f is None:
        return []
    views = s.params["views"]
    firsts = s.totals("model", "edgeshelf", ["returning-first"], [size])["views"]
    all_views = s.totals("model", "edgeshelf", SEGMENTS, [size])["views"]
    which = (
        f"the first view of each returning visitor's session of {views}: one per visitor and "
        "`AUDIENCE_TTL`"
        if all_views and f <= 1.05 * firsts / all_views
        else f"every view of a visitor with an ID: {_no_cookie(s)}"
    )
    if f > 0.05:
        q = 1 - 0.05 / f
        return [
            f"{size}: {f:.1%} of edgeshelf's page views awaited a per-user read ({which}). "
            "That is more than 5%, so the p95 falls among those views: at least the model's "
            f"{q:.0%} quantile of a cold read, {cold_quantile_ms(model, q):.1f} ms, against the "
            f"naive peer's p50 of {fmt(naive)} ms."
        ]
    return [
        f"{size}: {f:.1%} of edgeshelf's page views awaited a per-user read, under 5%, so the "
        "p95 is the tail of views that awaited none: the local tail (p95 "
        f"{fmt(s.ms('none', size, 'edgeshelf', 'p95_us'))} ms without injected latency) plus "
        "hot reads."
    ]


def _bound_reads(s: Sessions) -> list[str]:
    cold = s.per_1000("model", "edgeshelf", RETURNING, ("cold",))
    hot = s.per_1000("model", "edgeshelf", RETURNING, ("hot",))
    views = s.params["views"]
    if cold is None or hot is None:
        return []
    room = TARGET_RETURNING_READS - hot
    need = math.ceil(1000 / room) if room > 0 else None
    text = (
        f"Per 1,000 page views of returning visitors edgeshelf made {cold:.0f} per-user reads "
        f"and {hot:.0f} hot ones (segment and pointer refreshes, one per isolate and TTL). "
    )
    if cold > 1000 * 1.5 / views:
        return [
            text + f"{_no_cookie(s)[0].upper()}{_no_cookie(s)[1:]}: each returning page "
            "view read the profile."
        ]
    return [
        text + f"With the audience cookie a returning visitor reads its profile once per "
        f"session and `AUDIENCE_TTL` (sessions of {views} views here: {1000 / views:.0f} per "
        f"1,000); at most 150 needs sessions of {need if need else 'n/a'} views or more."
    ]


def _bound_cpu(s: Sessions | None, size: str) -> list[str]:
    if s is None:
        return []
    floor = s.med("none", size, "py-floor", "workerd_cpu_ms_per_view")
    es = s.med("none", size, "edgeshelf", "workerd_cpu_ms_per_view")
    if floor is None or es is None:
        return []
    return [
        f"The Python passthrough floor alone (enter the Worker, await one cache match, return "
        f"the shell) cost {floor:.3f} ms of CPU per view at {size}, edgeshelf {es:.3f} ms: the "
        "floor is the runtime's cost of a Python request; the single-operation and ablation "
        "tables below show the rest."
    ]


def section_targets_14(r: WrkCells, data: dict[str, Any]) -> list[str]:
    """The issue-14 targets: each measured, judged, and where missed, what bounds it."""
    s = Sessions(data) if data.get("sessions") else None
    rows: list[list[str]] = []
    bounds: list[str] = []

    def add(name: str, scope: str, es: str, peer: str, ok: bool | None, bound: list[str]) -> None:
        rows.append([name, scope, es, peer, verdict(ok)])
        if ok is False:
            bounds.extend(f"- *{name}* ({scope}): {b}" for b in bound)

    if s is not None and "model" in s.phases:
        t = s.totals("model", "edgeshelf", ["returning-later"])
        p = s.totals("model", PEER, ["returning-later"])

        def fresh(x: dict[str, float]) -> str:
            if not x["views"]:
                return "n/a"
            return (
                f"{x['cold'] * 1000 / x['views']:.0f} profile reads and "
                f"{(x['cold'] + x['hot']) * 1000 / x['views']:.1f} KV reads in all per 1,000 "
                f"views; {x['with_aud'] / x['views']:.0%} carried es_aud"
            )

        ok = t["views"] > 0 and t["with_aud"] == t["views"] and t["cold"] == 0
        add(
            "Returning visitor with a fresh es_aud: 0 awaited KV reads",
            "later views, counted by the wrapper",
            fresh(t),
            fresh(p),
            ok if t["views"] else None,
            _bound_fresh(s),
        )
    for size in r.sizes:

        def kc(target: str, size: str = size) -> float | None:
            known, cold = r.p50_ms(target, "known", size), r.p50_ms(target, "cold", size)
            return known / cold if known is not None and cold else None

        v = kc("edgeshelf")
        add(
            f"Locally, no injected latency: known-visitor p50 ≤ 1.10{X} cold-visitor p50",
            f"{size}, wrk, 1 conn",
            fmt(v, ".2f", X),
            fmt(kc(PEER), ".2f", X),
            None if v is None else v <= TARGET_KNOWN_COLD,
            _bound_known_cold(s, r, data),
        )
    if s is not None and "model" in s.phases:
        for size in s.sizes:
            es, nv, pr = (s.ms("model", size, t, "p50_us") for t in ("edgeshelf", NAIVE, PEER))
            ratio = nv / es if nv is not None and es else None
            peer_ratio = nv / pr if nv is not None and pr else None
            add(
                f"Under the model: p50 per page view ≥ 20{X} lower than the naive peer's",
                f"{size}, sessions",
                f"{fmt(ratio, '.1f', X)} lower ({fmt(es)} vs {fmt(nv)} ms)",
                f"{fmt(peer_ratio, '.1f', X)} lower ({fmt(pr)} ms)",
                None if ratio is None else ratio >= TARGET_LATENCY_RATIO,
                _bound_ratio(s, size),
            )
        for size in s.sizes:
            es95 = s.ms("model", size, "edgeshelf", "p95_us")
            pr95 = s.ms("model", size, PEER, "p95_us")
            nv50 = s.ms("model", size, NAIVE, "p50_us")
            add(
                "Under the model: p95 lower than the naive peer's p50",
                f"{size}, sessions",
                f"p95 {fmt(es95)} ms vs {fmt(nv50)} ms",
                f"p95 {fmt(pr95)} ms",
                None if es95 is None or nv50 is None else es95 < nv50,
                _bound_p95(s, size),
            )
        es_reads = s.per_1000("model", "edgeshelf", RETURNING)
        add(
            f"KV reads per 1,000 page views of returning visitors ≤ 150 (original design: "
            f"{ORIGINAL_RETURNING_READS:,})",
            f"sessions of {s.params['views']} views, all sizes",
            fmt(es_reads, ",.0f"),
            f"{fmt(s.per_1000('model', PEER, RETURNING), ',.0f')}; naive peer "
            f"{fmt(s.per_1000('model', NAIVE, RETURNING), ',.0f')}",
            None if es_reads is None else es_reads <= TARGET_RETURNING_READS,
            _bound_reads(s),
        )
    cpu, peer_cpu, where = None, None, "n/a"
    if s is not None and "1m" in s.sizes:
        cpu = s.med("none", "1m", "edgeshelf", "workerd_cpu_ms_per_view")
        peer_cpu = s.med("none", "1m", PEER, "workerd_cpu_ms_per_view")
        where = "1m, sessions, no injected latency"
    add(
        "CPU per request at the 1 MB shell ≤ 1 ms",
        where,
        fmt(cpu, ".3f", " ms"),
        fmt(peer_cpu, ".3f", " ms"),
        None if cpu is None else cpu <= TARGET_CPU_MS,
        _bound_cpu(s, "1m"),
    )
    lines = ["## Targets (issue 14)", ""]
    if s is not None:
        lines += [f"In this run, {_audience_note(s)}.", ""]
    lines += table(["target", "where", "edgeshelf", "same-algorithm JS peer", "status"], rows)
    lines += [""]
    if bounds:
        lines += ["**What bounds each missed target** (figures from this run):", "", *bounds, ""]
    return lines


# --- the sessions section ------------------------------------------------------------------------


def _model_lines(s: Sessions) -> list[str]:
    model = s.model()
    if model is None:
        return []
    lines = [
        "### The KV latency model",
        "",
        "Every Worker of the session runs reads KV through one wrapped binding "
        "(`bench/workers/kvlatency.mjs`); local KV answers, and the wrapper holds each read back "
        "by a wait drawn for its key's class, from the same seeded sequence for every Worker:",
        "",
    ]
    lines += table(
        ["class", "keys", "median wait (ms)", "p95 wait (ms)", "distribution"],
        [
            [
                "cold",
                ", ".join(f"`{p}…`" for p in model["cold_prefixes"]) + " (per-user profiles)",
                f"{model['cold']['p50_ms']:g}",
                f"{model['cold']['p95_ms']:g}",
                model["distribution"],
            ],
            [
                "hot",
                "everything else (segments, shell pointers)",
                f"{model['hot']['p50_ms']:g}",
                f"{model['hot']['p95_ms']:g}",
                "constant" if model["hot"]["p95_ms"] <= model["hot"]["p50_ms"] else "log-normal",
            ],
        ],
    )
    rehot = (
        f"a per-user key read again within {model['rehot_s']:g} s by the same isolate waits "
        "as a hot one"
        if model["rehot_s"]
        else "a per-user key waits as a cold read every time it is read (no re-warming)"
    )
    lines += ["", f"Waits are capped at {model['cap_ms']:g} ms; {rehot}; seed {model['seed']}.", ""]
    applied = s.phases["model"].get("applied", {})
    if applied:
        lines += ["Waits actually injected in this run (all Workers):", ""]
        lines += table(
            ["class", "reads", "median (ms)", "p95 (ms)", "p99 (ms)"],
            [
                [
                    cls,
                    f"{a['reads']:,}",
                    fmt(a["p50_ms"]),
                    fmt(a["p95_ms"]),
                    fmt(a["p99_ms"]),
                ]
                for cls, a in applied.items()
            ],
        )
        lines += [""]
    lines += ["Sources:", "", *(f"- {src}" for src in s.sources), ""]
    return lines


def _per_size(
    s: Sessions,
    title: str,
    intro: str,
    header: list[str],
    rows_of: Callable[[str], list[list[str]]],
) -> list[str]:
    """A subsection: its heading and intro, then one table per session shell size."""
    lines = [title, "", intro, ""]
    for size in s.sizes:
        lines += [f"#### {size} shell", "", *table(header, rows_of(size)), ""]
    return lines


def _results_lines(s: Sessions) -> list[str]:
    def rows(size: str) -> list[list[str]]:
        return [
            [
                LABELS[target],
                MODES[mode],
                fmt(s.ms(mode, size, target, "p50_us")),
                fmt(s.ms(mode, size, target, "p95_us")),
                fmt(s.ms(mode, size, target, "p99_us")),
                fmt(s.med(mode, size, target, "rps"), ",.0f"),
                fmt(s.med(mode, size, target, "workerd_cpu_ms_per_view"), ".3f"),
                fmt(s.per_1000(mode, target, SEGMENTS, sizes=[size]), ",.0f"),
                fmt(s.per_1000(mode, target, RETURNING, sizes=[size]), ",.0f"),
                fmt(s.per_1000(mode, target, ["returning-later"], ("cold",), [size]), ",.0f"),
            ]
            for mode in MODES
            if mode in s.phases
            for target in s.targets
        ]

    return _per_size(
        s,
        "### Per page view",
        "Medians over repetitions; KV reads summed over them. *Returning* counts both kinds of "
        "returning visitor, first and later views; the last column counts the per-user reads "
        "of returning visitors' later views, which carry `es_aud` where a Worker issues it.",
        [
            "Worker",
            "KV latency",
            "p50 (ms)",
            "p95 (ms)",
            "p99 (ms)",
            "views/s",
            "CPU ms/view",
            "KV reads / 1,000 views",
            "of returning visitors",
            "profile reads / 1,000 later returning views",
        ],
        rows,
    )


def _kinds_lines(s: Sessions) -> list[str]:
    if "model" not in s.phases:
        return []

    def rows(size: str) -> list[list[str]]:
        out = []
        for target in (t for t in READ_PATHS if t in s.targets):
            all_views = s.totals("model", target, SEGMENTS, [size])["views"]
            for seg, what in SEGMENTS.items():
                t = s.totals("model", target, [seg], [size])
                if not t["views"]:
                    continue
                out.append(
                    [
                        LABELS[target],
                        what,
                        f"{t['views'] / all_views:.0%}",
                        fmt(_div(s.seg_med("model", size, target, seg, "p50_us"), 1000)),
                        fmt(_div(s.seg_med("model", size, target, seg, "p95_us"), 1000)),
                        f"{t['cold'] / t['views']:.2f}",
                        f"{t['hot'] / t['views']:.2f}",
                        f"{t['ticks'] * MS_PER_TICK / t['views']:.3f}",
                    ]
                )
        return out

    return _per_size(
        s,
        "### Page views by kind (under the model)",
        "Where each Worker's page views wait: every kind of view is its own counted segment of "
        "a cell, so each KV read belongs to one kind.",
        [
            "Worker",
            "page view",
            "share",
            "p50 (ms)",
            "p95 (ms)",
            "per-user reads / view",
            "hot reads / view",
            "CPU ms/view",
        ],
        rows,
    )


def _div(v: float | None, d: float) -> float | None:
    return None if v is None else v / d


def section_sessions(data: dict[str, Any]) -> list[str]:
    """Visitor sessions with and without the KV latency model."""
    if not data.get("sessions"):
        return []
    s = Sessions(data)
    p = s.params
    mix = ", ".join(f"{k} {v:.0%}" for k, v in p["mix"].items())
    parity = [c for phase in s.phases.values() for c in phase.get("parity", [])]
    lines = [
        "## Visitor sessions, with production's KV latency",
        "",
        f"{p['visitors']} visitors per cell ({mix}), each making {p['views']} page views in a "
        f"row with its own cookie jar, {p['conns']} visitors at a time; {p['reps']} "
        f"repetitions per Worker and shell ({', '.join(s.sizes)}), the order rotating. Each "
        f"Worker ran them without injected latency and under the model below; "
        f"{_audience_note(s)}.",
        "",
    ]
    if parity:
        same = all(c["ok"] for c in parity)
        lines += [
            "Behind the wrapper, edgeshelf and the same-algorithm peer answered the parity "
            "requests " + ("alike" if same else "**differently**") + f" ({len(parity)} checks).",
            "",
        ]
    lines += _model_lines(s)
    lines += _results_lines(s)
    lines += _kinds_lines(s)
    return [*lines, *note("sessions")]


def sessions_plot(data: dict[str, Any], img_dir: Path) -> list[tuple[str, str]]:
    """p50 and p95 per page view under the model, per Worker and shell (log scale)."""
    if not data.get("sessions"):
        return []
    s = Sessions(data)
    if "model" not in s.phases:
        return []
    import matplotlib.pyplot as plt  # noqa: PLC0415  # report.py chose the backend first

    fig, axes = plt.subplots(1, len(s.sizes), figsize=(4.5 * len(s.sizes) + 1, 4.5), squeeze=False)
    for ax, size in zip(axes[0], s.sizes, strict=True):
        names = [SHORT[t] for t in s.targets]
        xs = range(len(s.targets))
        p50 = [s.ms("model", size, t, "p50_us") or 0 for t in s.targets]
        p95 = [s.ms("model", size, t, "p95_us") or 0 for t in s.targets]
        ax.bar([x - 0.2 for x in xs], p50, 0.4, label="p50", color="#3182bd")
        ax.bar([x + 0.2 for x in xs], p95, 0.4, label="p95", color="#fdae6b")
        ax.set_xticks(list(xs), names, fontsize=7)
        ax.set_yscale("log")
        ax.set_ylabel("ms per page view")
        ax.set_title(f"{size} shell")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Visitor sessions under the KV latency model (lower is better) {DASH} log scale")
    fig.tight_layout()
    name = "bench-sessions.png"
    fig.savefig(img_dir / name, dpi=110)
    plt.close(fig)
    return [(name, "p50 and p95 per page view under the KV latency model")]
