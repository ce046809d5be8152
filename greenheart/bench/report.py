"""What a benchmark shows: a table, a JSON document, a plot."""

from __future__ import annotations

import json
import os
import platform
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from greenheart.bench.ramp import StepResult, capacity

#: (heading, format of the value) for each column, in order
COLUMNS: tuple[tuple[str, str], ...] = (
    ("monitor", "{}"),
    ("hearts", "{}"),
    ("period", "{:g}"),
    ("pongs/s", "{:.0f}"),
    ("beats%", "{:.0f}"),
    ("on time%", "{:.2f}"),
    ("late", "{}"),
    ("failed", "{}"),
    ("rtt p50", "{:.1f}"),
    ("rtt p99", "{:.1f}"),
    ("rtt max", "{:.1f}"),
    ("round p99", "{:.1f}"),
    ("lag p99", "{:.1f}"),
    ("mon CPU%", "{:.0f}"),
    ("us/pong", "{:.1f}"),
    ("fleet CPU%", "{:.0f}"),
    ("KiB/heart", "{:.1f}"),
    ("verdict", "{}"),
)


def _cells(result: StepResult) -> list[object]:
    return [
        result.monitor,
        result.step.hearts,
        result.step.period_ms,
        result.pongs_per_second,
        result.beats_percent,
        result.on_time_percent,
        result.late_pongs,
        result.false_failures,
        result.rtt_p50_ms,
        result.rtt_p99_ms,
        result.rtt_max_ms,
        result.round_p99_ms,
        result.ping_lag_p99_ms,
        result.monitor_cpu_percent,
        result.monitor_us_per_pong,
        result.fleet_cpu_percent,
        result.fleet_rss_kib_per_heart,
        result.verdict,
    ]


def cell_text(template: str, value: object) -> str:
    """A value in a table's cell: ``-`` for none."""
    if value is None:
        return "-"
    return template.format(value)


def aligned(lines: Sequence[Sequence[str]], left: int = 1, ragged_last: bool = False) -> str:
    """Rows of cells as text columns two spaces apart: the first ``left`` columns flush left,
    the others right; with ``ragged_last`` the last column is free text, not padded."""
    padded = len(lines[0]) - 1 if ragged_last else len(lines[0])
    widths = [max(len(line[n]) for line in lines) for n in range(padded)]
    text = []
    for line in lines:
        cells = [
            cell.ljust(width) if n < left else cell.rjust(width)
            for n, (cell, width) in enumerate(zip(line[:padded], widths, strict=True))
        ]
        text.append("  ".join([*cells, *line[padded:]]))
    return "\n".join(text)


def table(results: Sequence[StepResult]) -> str:
    """The results as an aligned text table; times in ms."""
    rows: list[list[str]] = [[heading for heading, _ in COLUMNS]]
    for result in results:
        if result.settled:
            values = _cells(result)
            rows.append(
                [cell_text(fmt, value) for (_, fmt), value in zip(COLUMNS, values, strict=True)]
            )
        else:
            rows.append(
                [result.monitor, str(result.step.hearts), f"{result.step.period_ms:g}"]
                + ["-"] * (len(COLUMNS) - 4)
                + [result.verdict]
            )
    return aligned(rows, ragged_last=True)


def capacities(results: Sequence[StepResult], monitors: Sequence[str]) -> dict[str, dict | None]:
    found = {}
    for monitor in monitors:
        last_good = capacity(result for result in results if result.monitor == monitor)
        found[monitor] = None if last_good is None else last_good.as_dict()
    return found


def summary(results: Sequence[StepResult], monitors: Sequence[str]) -> str:
    """One line per monitor naming its capacity, and the ratios to greenheart's."""
    found = capacities(results, monitors)
    lines = []
    for monitor in monitors:
        ramp = [result for result in results if result.monitor == monitor]
        best = found[monitor]
        if best is None:
            lines.append(f"{monitor}: no good step; the first: {ramp[0].verdict}")
            continue
        held_all = all(result.good for result in ramp)
        ending = (
            "held every step of the ramp (capacity is at least this)"
            if held_all
            else f"next step: {ramp[len([r for r in ramp if r.good])].verdict}"
        )
        lines.append(
            f"{monitor}: capacity {best['hearts']} hearts @ {best['period_ms']:g} ms"
            f" = {best['pongs_per_second']:.0f} pongs/s; {ending}"
        )
    ours = found.get("greenheart")
    for monitor in monitors:
        theirs = found[monitor]
        if monitor != "greenheart" and ours and theirs:
            lines.append(
                f"greenheart / {monitor}: capacity"
                f" {ours['pongs_per_second'] / theirs['pongs_per_second']:.2f}x"
                + _cpu_ratio(results, monitor)
            )
    return "\n".join(lines)


def _cpu_ratio(results: Sequence[StepResult], monitor: str) -> str:
    """Monitor CPU per pong, greenheart's over ``monitor``'s, on the steps both held."""
    theirs = {r.step: r for r in results if r.monitor == monitor and r.good}
    pairs = [
        (a, b)
        for ours in results
        if ours.monitor == "greenheart" and ours.good and ours.step in theirs
        for a, b in [(ours.monitor_us_per_pong, theirs[ours.step].monitor_us_per_pong)]
        if a and b
    ]
    if not pairs:
        return ""
    ratio = sum(a for a, _ in pairs) / sum(b for _, b in pairs)
    return f"; CPU per pong {ratio:.2f}x on the {len(pairs)} step(s) both held"


def cpu_ratios(results: Sequence[StepResult], monitor: str, baseline: str) -> list[float]:
    """``monitor``'s CPU per pong over ``baseline``'s, on each step both held."""
    theirs = {r.step: r.monitor_us_per_pong for r in results if r.monitor == baseline and r.good}
    return [
        a / b
        for ours in results
        if ours.monitor == monitor and ours.good
        for a, b in [(ours.monitor_us_per_pong, theirs.get(ours.step))]
        if a and b
    ]


def spread(
    runs: Sequence[Sequence[StepResult]], monitors: Sequence[str], baseline: str
) -> tuple[str, list[dict[str, Any]]]:
    """Every run of a repeated ramp: each monitor's capacity, and against ``baseline``'s its
    capacity ratio and its median CPU-per-pong ratio on the steps both held; as a table, and
    as rows. Then in how many runs each monitor's capacity equalled the baseline's."""
    rows: list[dict[str, Any]] = []
    for number, results in enumerate(runs, start=1):
        found = capacities(results, monitors)
        base = found.get(baseline)
        for monitor in monitors:
            best = found[monitor]
            row: dict[str, Any] = {"run": number, "monitor": monitor, "capacity": best}
            if monitor != baseline:
                ratios = cpu_ratios(results, monitor, baseline)
                row["capacity_ratio"] = (
                    round(best["pongs_per_second"] / base["pongs_per_second"], 3)
                    if best and base
                    else None
                )
                row["cpu_per_pong_ratio_median"] = (
                    round(statistics.median(ratios), 3) if ratios else None
                )
                row["steps_compared"] = len(ratios)
            rows.append(row)
    lines = [["run", "monitor", "capacity", "pongs/s", f"/ {baseline}", "CPU/pong (median)"]]
    for row in rows:
        best = row["capacity"]
        lines.append(
            [
                str(row["run"]),
                row["monitor"],
                f"{best['hearts']} @ {best['period_ms']:g} ms" if best else "none",
                f"{best['pongs_per_second']:.0f}" if best else "-",
                f"{row['capacity_ratio']:.2f}x" if row.get("capacity_ratio") else "-",
                f"{row['cpu_per_pong_ratio_median']:.2f}x"
                if row.get("cpu_per_pong_ratio_median")
                else "-",
            ]
        )
    text = [aligned(lines, left=2)]
    for monitor in monitors:
        if monitor == baseline:
            continue
        mine = [row for row in rows if row["monitor"] == monitor]
        equal = sum(
            1 for row in mine if row.get("capacity_ratio") and row["capacity_ratio"] >= 0.995
        )
        cpu = [
            row["cpu_per_pong_ratio_median"] for row in mine if row.get("cpu_per_pong_ratio_median")
        ]
        text.append(
            f"{monitor}: capacity equal to {baseline}'s in {equal} of {len(runs)} runs;"
            f" median CPU per pong {min(cpu, default=0):.2f}x to {max(cpu, default=0):.2f}x"
        )
    return "\n".join(text), rows


def document(results: Sequence[StepResult], monitors: Sequence[str], config: dict) -> dict:
    """Everything, for ``--json``."""
    return {
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "config": config,
        "steps": [result.as_dict() for result in results],
        "capacity": capacities(results, monitors),
    }


def write_json(path: str | Path, doc: dict) -> None:
    Path(path).write_text(json.dumps(doc, indent=2, default=str) + "\n")


def two_panels() -> tuple[Any, Any, Any]:
    """A figure of two panels, one above the other, sharing their x axis (no display needed)."""
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError("--plot needs matplotlib: pip install 'greenheart-zmq[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(8, 7))
    return figure, top, bottom


def save_png(figure: Any, path: str | Path) -> None:
    import matplotlib.pyplot as plt

    figure.tight_layout()
    figure.savefig(path, format="png", dpi=100)
    plt.close(figure)


def plot(path: str | Path, results: Sequence[StepResult], monitors: Sequence[str]) -> None:
    """Latency and on-time percentage against load, one line per monitor, as a PNG."""
    figure, latency, on_time = two_panels()
    for number, monitor in enumerate(monitors):
        ramp = [r for r in results if r.monitor == monitor and r.settled]
        load = [r.pongs_per_second for r in ramp]
        color = f"C{number}"  # one colour a monitor, in both panels
        latency.plot(
            load, [r.rtt_p99_ms for r in ramp], marker="o", color=color, label=f"{monitor} rtt p99"
        )
        latency.plot(
            load,
            [r.round_p99_ms for r in ramp],
            marker="x",
            ls="--",
            color=color,
            label=f"{monitor} round p99",
        )
        on_time.plot(
            load, [r.on_time_percent for r in ramp], marker="o", color=color, label=monitor
        )
    latency.set_ylabel("milliseconds")
    latency.set_yscale("log")
    latency.legend(fontsize="small")
    latency.set_title("greenheart bench: latency and on-time answers against load")
    on_time.axhline(99, color="grey", lw=0.8, ls=":")
    on_time.set_ylabel("on time, %")
    on_time.set_xlabel("pongs per second")
    on_time.legend(fontsize="small")
    save_png(figure, path)
