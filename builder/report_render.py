"""The lift report on a terminal (rich), as Markdown with PNG plots, or as one HTML page.

Every output shows the same things in the same order: the SRM warning first when there is
one, the window and the arms (users and exposures against the weights), then per metric each
arm's value with its 95% interval and its difference with the baseline arm (interval, p-value,
relative lift). The pages add one plot per metric: each arm's value with its interval
(matplotlib, drawn without pyplot's global state).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from matplotlib.figure import Figure
from rich import box
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from builder.report import METRICS, SRM_THRESHOLD, ArmResult, Report

if TYPE_CHECKING:
    from pathlib import Path

    from builder.stats import Comparison, Estimate

__all__ = ["format_metric", "print_report", "write_page"]

_DIGITS: Final = {"watches_per_user": 2, "watch_seconds_per_user": 0, "shelf_share": 1}


def format_metric(key: str, value: float | None, *, signed: bool = False) -> str:
    """A metric value as shown: shares in percent (points for differences), others rounded."""
    if value is None:
        return "n/a"
    scale = 100.0 if key == "shelf_share" else 1.0
    sign = "+" if signed else ""
    return f"{value * scale:{sign}.{_DIGITS.get(key, 2)}f}"


def _interval(key: str, low: float | None, high: float | None, signed: bool = False) -> str:
    if low is None or high is None:
        return "n/a"
    return f"[{format_metric(key, low, signed=signed)}, {format_metric(key, high, signed=signed)}]"


def _p(p: float | None) -> str:
    if p is None:
        return "n/a"
    return "< 0.0001" if p < 1e-4 else f"{p:.4f}"


def _when(epoch: int | None) -> str:
    if epoch is None:
        return "-"
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _unit(key: str) -> str:
    return {"shelf_share": "%", "watch_seconds_per_user": "s"}.get(key, "")


def _diff_unit(key: str) -> str:
    return " pts" if key == "shelf_share" else _unit(key)


def _relative(c: Comparison) -> str:
    return "n/a" if c.relative is None else f"{c.relative:+.1%}"


def _srm_line(report: Report) -> str:
    parts = [f"users p = {_p(report.srm_users_p)}"]
    if report.exposures is not None:
        parts.append(f"exposures p = {_p(report.srm_exposures_p)}")
    verdict = "MISMATCH" if report.srm else "ok"
    return f"sample ratio ({verdict}, threshold p < {SRM_THRESHOLD}): " + ", ".join(parts)


def _header(report: Report) -> list[str]:
    exp = report.experiment
    arms = ", ".join(f"{a['name']} {a['weight']} → {a['treatment']}" for a in exp["arms"])
    inputs = report.inputs
    return [
        f"experiment {exp['name']} (salt {exp['salt']}): {arms}",
        f"window {_when(report.since)} → {_when(report.until)}: "
        f"{inputs['events_in_window']:,} watches by {inputs['window_users']:,} users "
        f"({inputs['window_users_without_profile']:,} without a profile before the window)",
        f"baseline arm: {report.baseline}; intervals are 95%",
        _srm_line(report),
    ]


def _users_cell(arm: ArmResult, total: int) -> str:
    share = arm.users / total if total else 0.0
    return f"{arm.users:,} ({share:.1%} / {arm.expected_share:.1%})"


# --- terminal ----------------------------------------------------------------------------------


def _rich_table(head: list[str], rows: list[list[str]], title: str | None = None) -> Table:
    table = Table(
        title=title, title_justify="left", header_style="bold", title_style="bold",
        box=box.SIMPLE_HEAD, pad_edge=False,
    )  # fmt: skip
    for i, col in enumerate(head):
        table.add_column(col, justify="left" if i == 0 else "right", no_wrap=i == 0)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    return table


def print_report(report: Report, console: Console) -> None:
    """The report as rich tables (arms, then one per metric), the SRM warning above them."""
    for warning in report.warnings:
        style = "bold red" if warning.startswith("SAMPLE-RATIO") else "yellow"
        console.print(Text("warning: ", style=style) + Text(warning), soft_wrap=True)
    console.print(Panel(Group(*(Text(line) for line in _header(report))), title="lift report"))
    console.print(_rich_table(*_arm_rows(report)))
    for key, label, unit in METRICS:
        title = f"{label}{f' ({unit})' if unit else ''}"
        console.print(_rich_table(*_metric_rows(report, key), title=title))
    if report.exposures is not None:
        e = report.exposures
        console.print(
            Text(
                f"exposures from {e.lines:,} log lines: {e.total:,} of this experiment, "
                f"{e.not_enrolled:,} not enrolled, {e.other_experiment:,} of other experiments, "
                f"{e.skipped:,} lines skipped"
            ),
            soft_wrap=True,
        )


# --- pages ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plot:
    key: str
    png: bytes


def _figure(report: Report, key: str, label: str) -> Figure:
    fig = Figure(figsize=(6.4, 0.6 + 0.55 * len(report.arms)), layout="constrained")
    ax = fig.add_subplot()
    scale = 100.0 if key == "shelf_share" else 1.0
    names, values, lows, highs = [], [], [], []
    for arm in reversed(report.arms):
        est: Estimate = arm.metrics[key]
        if est.value is None:
            continue
        names.append(f"{arm.name} ({arm.treatment})")
        values.append(est.value * scale)
        lows.append((est.value - (est.low if est.low is not None else est.value)) * scale)
        highs.append(((est.high if est.high is not None else est.value) - est.value) * scale)
    positions = list(range(len(names)))
    ax.errorbar(values, positions, xerr=[lows, highs], fmt="o", capsize=4, color="#1f5fa8")
    base = report.arm(report.baseline).metrics[key].value
    if base is not None:
        ax.axvline(base * scale, linestyle="--", linewidth=1, color="#888888")
    ax.set_yticks(positions, names)
    ax.set_ylim(-0.6, len(names) - 0.4)
    unit = _unit(key)
    ax.set_xlabel(f"{label}{f' ({unit})' if unit else ''}, 95% interval")
    ax.grid(axis="x", alpha=0.3)
    return fig


def _plots(report: Report) -> list[_Plot]:
    out = []
    for key, label, _ in METRICS:
        fig = _figure(report, key, label)
        png = io.BytesIO()
        fig.savefig(png, format="png", dpi=110, metadata={"Software": None})
        out.append(_Plot(key, png.getvalue()))
    return out


def _arm_rows(report: Report) -> tuple[list[str], list[list[str]]]:
    head = ["arm", "treatment", "weight", "users (seen / weight)"]
    if report.exposures is not None:
        head.append("exposures")
    total = sum(a.users for a in report.arms)
    rows = []
    for arm in report.arms:
        row = [arm.name, arm.treatment, str(arm.weight), _users_cell(arm, total)]
        if report.exposures is not None:
            row.append(f"{arm.exposures or 0:,}")
        rows.append(row)
    return head, rows


def _metric_rows(report: Report, key: str) -> tuple[list[str], list[list[str]]]:
    head = ["arm", "value", "95% CI", f"Δ vs {report.baseline}", "Δ 95% CI", "p", "lift"]
    rows = []
    for arm in report.arms:
        est = arm.metrics[key]
        row = [arm.name, format_metric(key, est.value), _interval(key, est.low, est.high)]
        if arm.versus is None:
            row += ["baseline", "", "", ""]
        else:
            c = arm.versus[key]
            row += [
                format_metric(key, c.diff, signed=True) + _diff_unit(key),
                _interval(key, c.low, c.high, signed=True),
                _p(c.p_value),
                _relative(c),
            ]
        rows.append(row)
    return head, rows


def _md_table(head: list[str], rows: list[list[str]]) -> list[str]:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return [line(head), "|" + "---|" * len(head), *(line(r) for r in rows), ""]


def _markdown(report: Report, images: dict[str, str]) -> str:
    exp = report.experiment
    out = [f"# Lift report: {exp['name']}", ""]
    for warning in report.warnings:
        out += [f"> **Warning:** {warning}", ""]
    out += [f"- {line}" for line in _header(report)] + [""]
    out += _md_table(*_arm_rows(report))
    for key, label, _ in METRICS:
        out += [f"## {label.capitalize()}", ""]
        out += _md_table(*_metric_rows(report, key))
        out += [f"![{label}]({images[key]})", ""]
    return "\n".join(out)


def _html_table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


_CSS: Final = (
    "body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}"
    "table{border-collapse:collapse;margin:.5rem 0 1rem}td,th{border:1px solid #ccc;"
    "padding:.25rem .6rem;text-align:right}td:first-child,th:first-child{text-align:left}"
    ".warn{background:#fde8e8;border-left:4px solid #c81e1e;padding:.5rem 1rem}"
)


def _html(report: Report, plots: list[_Plot]) -> str:
    exp = report.experiment
    title = html.escape(f"Lift report: {exp['name']}")
    parts = [f"<!doctype html><html lang=en><meta charset=utf-8><title>{title}</title>"]
    parts.append(f"<style>{_CSS}</style><h1>{title}</h1>")
    for warning in report.warnings:
        parts.append(f"<p class=warn><strong>Warning:</strong> {html.escape(warning)}</p>")
    parts.append("<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in _header(report)) + "</ul>")
    parts.append(_html_table(*_arm_rows(report)))
    by_key = {p.key: p for p in plots}
    for key, label, _ in METRICS:
        parts.append(f"<h2>{html.escape(label.capitalize())}</h2>")
        parts.append(_html_table(*_metric_rows(report, key)))
        # An <img> of the PNG, not inline SVG markup: the page stays one self-contained file
        # and nothing matplotlib writes is ever parsed as this page's HTML.
        data = base64.b64encode(by_key[key].png).decode("ascii")
        parts.append(f'<img alt="{html.escape(label)}" src="data:image/png;base64,{data}">')
    return "".join(parts) + "\n"


def write_page(report: Report, out: Path) -> list[Path]:
    """Write ``out`` (``.html``, or ``.md`` with a PNG per metric beside it); the files written."""
    suffix = out.suffix.lower()
    if suffix not in (".html", ".htm", ".md", ".markdown"):
        raise ValueError(f"--out must end in .html or .md, got {out.name!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    plots = _plots(report)
    if suffix in (".html", ".htm"):
        out.write_text(_html(report, plots), encoding="utf-8")
        return [out]
    written = []
    images = {}
    for plot in plots:
        image = out.with_name(f"{out.stem}-{plot.key.replace('_', '-')}.png")
        image.write_bytes(plot.png)
        images[plot.key] = image.name
        written.append(image)
    out.write_text(_markdown(report, images), encoding="utf-8")
    return [out, *written]
