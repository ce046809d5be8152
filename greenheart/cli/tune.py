"""``greenheart tune``: replay a recording under a grid of settings, and choose one from targets.

See :mod:`greenheart.core.tuning` for what is measured and how, and
:mod:`greenheart.core.replay` for how other periods are made up from the recorded one.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from greenheart.bench.report import aligned
from greenheart.cli.monitor import options
from greenheart.core.checks import (
    argument,
    count,
    listed,
    non_negative_float,
    positive_count,
    positive_float,
    share,
)
from greenheart.core.errors import UsageError
from greenheart.core.recording import Recording, read
from greenheart.core.stats import percentile
from greenheart.core.tuning import (
    DEATHS,
    MAX_MISSES,
    PHI_THRESHOLDS,
    Choice,
    Result,
    Setting,
    Targets,
    choose,
    evaluate_all,
    parse_duration,
    parse_rate,
    settings_for,
)


def add_command(commands: argparse._SubParsersAction) -> None:
    tune = commands.add_parser(
        "tune",
        help="replay a recording (greenheart monitor --record) under other settings; choose one",
        description="Replay a recording through the monitor's rules under a grid of settings:"
        " for each, how long a hang and a crash take to notice, and the false failures it"
        " would have made. Given targets, name the setting that meets both with the fastest"
        " detection.",
    )
    tune.add_argument("files", nargs="+", metavar="FILE", help="a recording, or its rotated files")
    tune.add_argument(
        "--period",
        type=listed(positive_float),
        metavar="MS,...",
        help="periods to try (default: the recorded one); others are made up from it",
    )
    tune.add_argument(
        "--max-misses",
        type=listed(count),
        default=list(MAX_MISSES),
        metavar="N,...",
        help=f"miss counts to try (default {','.join(map(str, MAX_MISSES))})",
    )
    tune.add_argument(
        "--phi",
        type=listed(positive_float),
        default=list(PHI_THRESHOLDS),
        metavar="T,...",
        help=f"phi thresholds to try (default {','.join(f'{t:g}' for t in PHI_THRESHOLDS)});"
        " an empty list tries none",
    )
    tune.add_argument(
        "--phi-pause",
        type=listed(non_negative_float),
        metavar="MS,...",
        help="phi's acceptable pauses to try (default 0 and one period)",
    )
    tune.add_argument(
        "--mass-silence-share",
        type=listed(share),
        metavar="SHARE,...",
        help="mass-silence shares to try (default: the recorded rule's)",
    )
    tune.add_argument(
        "--mass-silence-hold",
        type=listed(positive_count),
        metavar="BEATS,...",
        help="mass-silence holds to try (default: the recorded rule's)",
    )
    tune.add_argument(
        "--no-mass-silence", action="store_true", help="try without the mass-silence rule too"
    )
    tune.add_argument(
        "--detect",
        type=argument(parse_duration),
        metavar="TIME",
        help="target: every death noticed within TIME",
    )
    tune.add_argument(
        "--false-failures",
        type=argument(parse_rate),
        metavar="RATE",
        help="target: at most RATE false failures (1/day for the recorded cluster, 0.1/heart/day)",
    )
    tune.add_argument(
        "--fail-on-disconnect",
        action="store_true",
        help="try every setting with --fail-on-disconnect: a crash is noticed when its"
        " connection closes",
    )
    tune.add_argument(
        "--deaths",
        type=positive_count,
        default=DEATHS,
        metavar="N",
        help=f"deaths injected into each replay, half hangs, half crashes (default {DEATHS})",
    )
    tune.add_argument("--seed", type=int, default=0, help="same seed, same deaths")
    tune.add_argument("--json", action="store_true", help="print JSON")
    tune.set_defaults(run=run)


def load(files: Sequence[str]) -> Recording:
    """The recordings in ``files``, segments in order, as one."""
    recordings = []
    for name in files:
        try:
            data = Path(name).read_bytes()
        except OSError as error:
            raise UsageError(f"cannot read {name}: {error.strerror}") from None
        try:
            recordings.append(read(data))
        except ValueError as error:
            raise UsageError(f"{name}: {error}") from None
    recordings.sort(key=lambda recording: (recording.header.segment, recording.start))
    first = recordings[0]
    inputs = [event for recording in recordings for event in recording.inputs]
    return Recording(
        first.header,
        inputs,
        truncated=any(recording.truncated for recording in recordings),
        size=sum(recording.size for recording in recordings),
    )


def settings(args: argparse.Namespace, recording: Recording) -> list[Setting]:
    """The grid the options ask for."""
    tried = settings_for(
        recording.header,
        periods=args.period or (),
        max_misses=args.max_misses,
        phi=args.phi,
        phi_pauses_ms=args.phi_pause,
        shares=args.mass_silence_share or (),
        holds=args.mass_silence_hold or (),
        without_mass_silence=args.no_mass_silence,
        fail_on_disconnect=args.fail_on_disconnect,
    )
    if not tried:
        raise UsageError("no setting to try: give --max-misses or --phi")
    return tried


def choose_from(args: argparse.Namespace, results: Sequence[Result]) -> Choice:
    return choose(results, Targets.of(args.detect, args.false_failures))


def command(setting: Setting) -> str:
    """The ``greenheart monitor`` options for ``setting``."""
    return " ".join(options(setting.period, setting.rules))


def result_json(result: Result) -> dict[str, Any]:
    return {**result.as_json(), "options": command(result.setting)}


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    recording = load(args.files)
    results = evaluate_all(recording, settings(args, recording), deaths=args.deaths, seed=args.seed)
    deaths = max((len(r.hang.times) + r.hang.missed) * 2 for r in results)
    choice = choose_from(args, results) if args.detect or args.false_failures else None
    summary = recording_summary(recording, deaths)
    if args.json:
        body: dict[str, Any] = {"recording": summary, "results": [result_json(r) for r in results]}
        if choice is not None:
            body["choice"] = _choice_json(choice)
        json.dump(body, out, indent=1)
        out.write("\n")
    else:
        out.write(summary_text(summary) + "\n\n")
        out.write(table(results) + "\n")
        if choice is not None:
            out.write("\n" + choice_text(choice, args) + "\n")
    return 0 if choice is None or choice.chosen is not None else 1


def recording_summary(recording: Recording, deaths: int) -> dict[str, Any]:
    hearts, hours = len(recording.hearts), recording.duration / 3600
    return {
        "period_ms": recording.header.period,
        "source": recording.header.source,
        "started": recording.header.started,
        "seconds": round(recording.duration, 3),
        "beats": recording.beat_count(),
        "hearts": hearts,
        "bytes": recording.size,
        "bytes_per_heart_hour": round(recording.size / hearts / hours) if hearts and hours else 0,
        "truncated": recording.truncated,
        "deaths": deaths,
    }


def summary_text(summary: dict[str, Any]) -> str:
    cut = " (cut off: replayed to its last complete event)" if summary["truncated"] else ""
    return (
        f"recording: {summary['hearts']} hearts, {summary['seconds']:.0f} s,"
        f" {summary['beats']} beats at {summary['period_ms']:g} ms, {summary['bytes']:,} bytes"
        f" ({summary['bytes_per_heart_hour'] or 0:,} per heart-hour){cut};"
        f" {summary['deaths']} deaths injected per replay"
    )


def _ms(value: float | None) -> str:
    if value is None:
        return "missed"
    return f"{value * 1000:.0f}"


HEADINGS = [
    "period ms",
    "rule",
    "mass silence",
    "hang ms p50/max",
    "crash ms p50/max",
    "crash+fod max",
    "false",
    "/heart/day",
    "95% bound",
    "false lasted ms p50/max",
]


def table(results: Sequence[Result]) -> str:
    rows = [HEADINGS]
    for result in results:
        mistakes = result.false_failures
        lasted = mistakes.durations
        rows.append(
            [
                f"{result.setting.period:g}",
                result.setting.rule,
                result.setting.silence,
                f"{_ms(result.hang.median)}/{_ms(result.hang.worst)}",
                f"{_ms(result.crash.median)}/{_ms(result.crash.worst)}",
                _ms(result.crash_on_disconnect.worst),
                str(mistakes.count),
                f"{mistakes.per_heart_day:.3g}",
                f"{mistakes.per_heart_day_bound:.3g}",
                f"{_ms(percentile(lasted, 0.5))}/{_ms(max(lasted))}" if lasted else "-",
            ]
        )
    return aligned(rows, left=1)


def _describe(result: Result, per_heart: bool) -> str:
    detect = result.detect()
    rate = result.false_failures.per_day(per_heart)
    unit = "per heart per day" if per_heart else "a day for the cluster"
    noticed = "a death missed" if detect is None else f"every death noticed within {_ms(detect)} ms"
    return f"{command(result.setting)} ({noticed}; {rate:.3g} false failures {unit})"


def choice_text(choice: Choice, args: argparse.Namespace) -> str:
    per_heart = bool(args.false_failures and args.false_failures.per_heart)
    targets = []
    if args.detect:
        targets.append(f"every death noticed within {args.detect * 1000:g} ms")
    if args.false_failures:
        targets.append(f"at most {args.false_failures.text} false failures")
    wanted = " and ".join(targets)
    if choice.chosen is not None:
        lines = [f"meets {wanted}, fastest: {_describe(choice.chosen, per_heart)}"]
        bound = choice.chosen.false_failures.per_heart_day_bound
        if args.false_failures and not per_heart:
            bound *= choice.chosen.false_failures.hearts
        if args.false_failures and bound > args.false_failures.per_day:
            lines.append(
                f"  (the recording is too short to promise the rate: its 95% bound is {bound:.3g}"
                " a day; record longer)"
            )
        return "\n".join(lines)
    lines = [f"no setting meets {wanted}"]
    if choice.closest is not None:
        missed = "detection" if choice.misses == "detect" else "false-failure"
        lines.append(
            f"  closest (misses the {missed} target): {_describe(choice.closest, per_heart)}"
        )
    if choice.fastest_quiet is not None and args.false_failures:
        lines.append(
            f"  fastest within the false-failure target:"
            f" {_describe(choice.fastest_quiet, per_heart)}"
        )
    if choice.quietest_fast is not None and args.detect:
        lines.append(
            f"  fewest false failures within the detection target:"
            f" {_describe(choice.quietest_fast, per_heart)}"
        )
    return "\n".join(lines)


def _choice_json(choice: Choice) -> dict[str, Any]:
    def of(result: Result | None) -> dict[str, Any] | None:
        return None if result is None else result_json(result)

    return {
        "chosen": of(choice.chosen),
        "closest": of(choice.closest),
        "closest_misses": choice.misses,
        "fastest_within_false_failures": of(choice.fastest_quiet),
        "fewest_false_failures_within_detect": of(choice.quietest_fast),
    }
