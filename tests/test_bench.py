"""greenheart bench: the ramp and capacity rules on synthetic steps, and short real runs."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from greenheart.bench.command import SUBCOMMANDS, with_default_subcommand
from greenheart.bench.controller import summary as controller_summary
from greenheart.bench.lines import BeatReport
from greenheart.bench.ramp import (
    ON_TIME_FLOOR,
    RampPlan,
    Step,
    StepResult,
    capacity,
    ramp_goes_on,
    run_again,
    summarise,
    unsettled,
)
from greenheart.bench.report import spread, summary, table
from greenheart.bench.runner import _split
from greenheart.bench.soak import match
from greenheart.cli import main
from greenheart.core.rules import Rules
from tests.helpers import wait_until


def beat(at: float, cpu: float, hearts: int, **overrides: object) -> BeatReport:
    fields = {
        "beat": 0,
        "at": at,
        "cpu": cpu,
        "hearts": hearts,
        "responded": hearts,
        "on_probation": 0,
        "new": 0,
        "failed": 0,
        "on_time": hearts,
        "late": 0,
        "bad": 0,
        "rtt_ms": [1.0, 2.0, 3.0, 4.0],
        "rtt_max_ms": 4.0,
        "round_ms": 4.0,
    }
    return BeatReport(**(fields | overrides))


def result(monitor: str, hearts: int, period: float, on_time: float = 100.0, failed: int = 0):
    return StepResult(
        monitor=monitor,
        step=Step(hearts, period),
        settled=True,
        beats=10,
        seconds=1.0,
        pongs_per_second=hearts * 1000 / period,
        on_time_percent=on_time,
        false_failures=failed,
    )


# -- the plan ---------------------------------------------------------------------------------


def test_the_ramp_adds_hearts_at_the_longest_period_then_shortens_the_period():
    plan = RampPlan(hearts=[4000, 1000, 2000, 1000], periods_ms=[100, 200, 50])
    assert plan.steps() == [
        Step(1000, 200.0),
        Step(2000, 200.0),
        Step(4000, 200.0),
        Step(4000, 100.0),
        Step(4000, 50.0),
    ]


@pytest.mark.parametrize(
    ("hearts", "periods"), [([], [100]), ([0], [100]), ([10], []), ([10], [0]), ([10], [-5])]
)
def test_a_plan_refuses_nonsense(hearts, periods):
    with pytest.raises(ValueError):
        RampPlan(hearts=hearts, periods_ms=periods)


@given(st.integers(1, 100_000), st.integers(1, 64))
def test_hearts_are_split_evenly_among_fleet_processes(hearts, processes):
    shares = _split(hearts, processes)
    assert sum(shares) == hearts
    assert max(shares) - min(shares) <= 1
    assert min(shares) >= 1
    assert len(shares) == min(hearts, processes)


# -- one step, summed up ------------------------------------------------------------------------


def test_a_step_is_summed_up_from_its_beats():
    beats = [beat(10.0, 5.0, 100)]
    beats += [beat(10.0 + 0.1 * n, 5.0 + 0.01 * n, 100) for n in range(1, 11)]
    beats[3] = beat(10.3, 5.03, 100, on_time=90, late=10, round_ms=50.0, rtt_max_ms=60.0)
    summed = summarise("greenheart", Step(100, 100), beats, fleet_cpu_seconds=0.5,
                       fleet_rss_kib=3000)  # fmt: skip
    assert summed.beats == 10
    assert summed.seconds == pytest.approx(1.0)
    assert summed.pongs_per_second == pytest.approx(1000)
    assert summed.on_time_percent == pytest.approx(99.0)
    assert summed.late_pongs == 10
    assert summed.rtt_max_ms == 60.0
    assert summed.rtt_p50_ms == 2.0
    assert summed.rtt_p99_ms == 4.0
    assert summed.round_p99_ms == 50.0
    assert summed.monitor_cpu_percent == pytest.approx(10.0)
    assert summed.monitor_us_per_pong == pytest.approx(100.0)
    assert summed.fleet_cpu_percent == pytest.approx(50.0)
    assert summed.fleet_rss_kib_per_heart == pytest.approx(30.0)
    assert summed.good


def test_a_summary_needs_a_start_and_a_beat():
    with pytest.raises(ValueError):
        summarise("greenheart", Step(1, 100), [beat(0, 0, 1)])


# -- the capacity rule ---------------------------------------------------------------------------


def test_a_step_is_bad_with_a_false_failure_or_too_few_on_time_answers():
    assert result("g", 10, 100).good
    assert result("g", 10, 100, on_time=ON_TIME_FLOOR).good
    assert not result("g", 10, 100, on_time=ON_TIME_FLOOR - 0.01).good
    assert "on time" in result("g", 10, 100, on_time=50).verdict
    assert not result("g", 10, 100, failed=1).good
    assert "wrongly failed" in result("g", 10, 100, failed=1).verdict
    assert not unsettled("g", Step(10, 100), "heard 3 of 10").good
    assert unsettled("g", Step(10, 100), "heard 3 of 10").verdict == "heard 3 of 10"


def test_capacity_is_the_last_good_step_before_the_first_bad_one():
    ramp = [result("g", 1000, 200), result("g", 2000, 200), result("g", 2000, 100, failed=2)]
    ramp.append(result("g", 2000, 50))  # good again: noise, not capacity
    assert capacity(ramp) == ramp[1]
    assert not ramp_goes_on(ramp)
    assert ramp_goes_on(ramp[:2])
    assert capacity([result("g", 1000, 200, on_time=10)]) is None
    assert capacity([]) is None


@given(st.lists(st.booleans(), max_size=12))
def test_capacity_never_passes_a_bad_step(goodness):
    ramp = [
        result("g", 100 * (n + 1), 100, on_time=100 if good else 0)
        for n, good in enumerate(goodness)
    ]
    found = capacity(ramp)
    good_prefix = len(goodness) if all(goodness) else goodness.index(False)
    assert found == (ramp[good_prefix - 1] if good_prefix else None)


def test_the_report_names_capacities_and_their_ratio():
    results = [
        result("greenheart", 1000, 100),
        result("ipyparallel", 1000, 100),
        result("greenheart", 1000, 50),
        result("ipyparallel", 1000, 50, on_time=80),
    ]
    text = summary(results, ["greenheart", "ipyparallel"])
    assert "greenheart: capacity 1000 hearts @ 50 ms = 20000 pongs/s" in text
    assert "ipyparallel: capacity 1000 hearts @ 100 ms = 10000 pongs/s" in text
    assert "greenheart / ipyparallel: capacity 2.00x" in text
    lines = table(results).splitlines()
    assert len(lines) == 5
    assert lines[0].split()[:3] == ["monitor", "hearts", "period"]
    assert "on time 80.0%" in lines[4]


def test_the_spread_counts_the_runs_a_monitor_held_the_baselines_capacity_in():
    def run(ours_last: float, cpu: tuple[float, ...]) -> list[StepResult]:
        steps = []
        for period, us in zip((100, 90, 80), cpu, strict=True):
            steps.append(attrs.evolve(result("raw", 1000, period), monitor_us_per_pong=10.0))
            on_time = 100.0 if period >= ours_last else 50.0
            mine = result("greenheart", 1000, period, on_time=on_time)
            steps.append(attrs.evolve(mine, monitor_us_per_pong=us))
        return steps

    # run 2 held one step fewer; its ratios over the two steps both held are 0.8 and 1.0
    text, rows = spread([run(80, (9, 10, 11)), run(90, (8, 10, 12))], ["greenheart", "raw"], "raw")
    ours = [row for row in rows if row["monitor"] == "greenheart"]
    assert [row["capacity_ratio"] for row in ours] == [1.0, 0.889]
    assert [row["cpu_per_pong_ratio_median"] for row in ours] == [1.0, 0.9]  # the mean of two
    assert [row["steps_compared"] for row in ours] == [3, 2]
    assert (
        "greenheart: capacity equal to raw's in 1 of 2 runs; median CPU per pong 0.90x to 1.00x"
        in text
    )


# -- real runs -----------------------------------------------------------------------------------


def bench(*args: str, **kwargs: object) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "greenheart", "bench", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


@pytest.mark.timeout(120)
def test_a_short_bench_of_two_monitors_prints_the_table_and_writes_json_and_a_png(tmp_path):
    out_json, out_png = tmp_path / "bench.json", tmp_path / "bench.png"
    run = bench(
        *("--hearts", "20,40", "--period", "100", "--duration", "1", "--monitor", "greenheart,raw"),
        *("--json", str(out_json), "--plot", str(out_png)),
    )
    stdout, stderr = run.communicate(timeout=110)
    assert run.returncode == 0, stderr
    assert "greenheart: capacity 40 hearts @ 100 ms" in stdout, stdout
    assert "raw: capacity 40 hearts @ 100 ms" in stdout, stdout
    assert "greenheart / raw: capacity 1.00x" in stdout
    doc = json.loads(out_json.read_text())
    steps = doc["steps"]
    assert [(s["monitor"], s["hearts"]) for s in steps] == [
        ("greenheart", 20), ("raw", 20), ("greenheart", 40), ("raw", 40),
    ]  # fmt: skip
    table_figures = ["pongs_per_second", "on_time_percent", "late_pongs", "false_failures",
                     "rtt_p50_ms", "rtt_p99_ms", "rtt_max_ms", "round_p99_ms",
                     "monitor_cpu_percent", "monitor_us_per_pong", "fleet_cpu_percent",
                     "fleet_rss_kib_per_heart", "verdict"]  # fmt: skip
    for step in steps:
        assert step["good"], step
        assert step["on_time_percent"] == 100.0
        for figure in table_figures:
            assert step[figure] is not None, figure
    assert doc["capacity"]["greenheart"]["hearts"] == 40
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


@pytest.mark.timeout(90)
def test_ctrl_c_stops_every_child_process():
    run = bench("--hearts", "50", "--period", "100", "--duration", "60")
    try:
        # the monitor and the fleet are up
        wait_until(lambda: len(children_of(run.pid)) >= 2, timeout=30)
        kids = children_of(run.pid)
        run.send_signal(signal.SIGINT)
        _, stderr = run.communicate(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 130, stderr
    assert "interrupted" in stderr
    for kid in kids:
        wait_until(lambda kid=kid: not Path(f"/proc/{kid}").exists(), timeout=10)


@pytest.mark.timeout(30)
def test_bench_refuses_bad_arguments():
    run = bench("--hearts", "0")
    _, stderr = run.communicate(timeout=20)
    assert run.returncode == 2
    assert "argument --hearts: must be 1 or more, got 0" in stderr
    run = bench("--monitor", "nginx")
    _, stderr = run.communicate(timeout=20)
    assert run.returncode == 2
    assert "monitors are" in stderr


@pytest.mark.timeout(180)
def test_the_fleet_bench_at_a_tiny_size(tmp_path):
    out = tmp_path / "fleet.json"
    run = bench(
        "fleet", *("--hearts", "30", "--hold", "1", "--pings", "5"),
        *("--ipyparallel-step", "5", "--ipyparallel-limit", "10", "--json", str(out)),
    )  # fmt: skip
    stdout, stderr = run.communicate(timeout=170)
    assert run.returncode == 0, stderr
    assert "density: hearts in one fleet, 1 s period, zero misses  30 for 1 s: yes" in stdout
    figures = json.loads(out.read_text())
    assert figures["density_30"]["zero_misses"] and figures["density_30"]["beats"] >= 2
    # a fleet heart costs 2 descriptors, a Heart object 4 (plus what a process has anyway)
    assert 2 <= figures["fleet_30"]["fds_per_heart"] < figures["heart_objects_30"]["fds_per_heart"]
    assert figures["fidelity"]["pongs_expected"] == 5 * 30
    assert figures["ipyparallel_thread_hearts"]["held"] == 10


@pytest.mark.timeout(120)
def test_the_soak_at_a_tiny_size(tmp_path):
    out = tmp_path / "soak.json"
    run = bench(
        "soak", *("--hearts", "40", "--period", "100", "--minutes", "0.2", "--churn", "0.5"),
        *("--churn-every", "2", "--warmup", "3", "--json", str(out)),
    )  # fmt: skip
    stdout, stderr = run.communicate(timeout=110)
    assert run.returncode == 0, stdout + stderr
    assert "OK: no false failures" in stdout
    result = json.loads(out.read_text())
    assert result["killed"] >= 3 and result["failed"] >= result["killed"]
    assert result["false_failures"] == result["undetected"] == result["late_detections"] == 0
    assert result["bad_pongs"] > 0  # the garbage came, and was counted


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["bench"], ["bench", "ramp"]),
        (["-v", "bench", "--hearts", "10"], ["-v", "bench", "ramp", "--hearts", "10"]),
        (["bench", "soak", "--quick"], ["bench", "soak", "--quick"]),
        (["bench", "--help"], ["bench", "--help"]),
        (["heart", "--id", "bench"], ["heart", "--id", "bench"]),
    ],
)
def test_the_ramp_is_the_default_bench(argv, expected):
    assert with_default_subcommand(argv) == expected


def test_every_bench_is_named_in_the_help(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    assert set(SUBCOMMANDS) <= set(re.findall(r"[\w-]+", capsys.readouterr().out))
    with pytest.raises(SystemExit):
        main(["--help"])
    # the bench command's own line of the list of commands, wrapped lines and all
    (line,) = re.findall(r"^ {4}bench .*?(?=^ {4}\S|\n\n)", capsys.readouterr().out, re.M | re.S)
    assert set(SUBCOMMANDS) <= set(re.findall(r"[\w-]+", line))


@pytest.mark.timeout(120)
def test_the_detect_bench_at_a_tiny_size(tmp_path):
    out = tmp_path / "detect.json"
    run = bench(
        "detect", *("--periods", "300", "--processes", "3", "--stopped", "1"),
        *("--fleet", "10", "--fleet-kills", "3", "--no-ipyparallel", "--json", str(out)),
    )  # fmt: skip
    stdout, stderr = run.communicate(timeout=110)
    assert run.returncode == 0, stderr
    rows = {(r["fail_on_disconnect"], r["kind"]): r for r in json.loads(out.read_text())["rows"]}
    assert rows[(True, "SIGKILL")]["deaths"] == 2 and rows[(True, "kill()")]["deaths"] == 3
    # with the option a closed connection is news within milliseconds; without, a beat later
    assert rows[(True, "SIGKILL")]["max_ms"] < 300 < rows[(False, "SIGKILL")]["p50_ms"]
    assert rows[(True, "SIGSTOP")]["deaths"] == 1  # a hung heart is still found by its misses
    assert "on disconnect" in stdout


@pytest.mark.timeout(120)
def test_the_tune_bench_at_a_tiny_size(tmp_path):
    out = tmp_path / "tune.json"
    run = bench(
        "tune", *("--duration", "12", "--hearts", "20", "--paused-hearts", "5"),
        *("--dir", str(tmp_path), "--json", str(out)),
    )  # fmt: skip
    stdout, stderr = run.communicate(timeout=110)
    assert run.returncode == 0, stdout + stderr
    figures = json.loads(out.read_text())
    # the recorded setting's replay made the live monitor's verdicts again
    recorded = figures["recorded"]
    assert recorded["live"] == recorded["replay"] and recorded["live"]["false_failure"] > 0
    assert figures["chosen"]["rule"].startswith(("misses=", "phi="))
    assert Rules.from_json(figures["chosen"]["rules"]) != Rules()  # not the recorded setting
    assert "meets every death noticed within 1000 ms" in stdout


@pytest.mark.timeout(150)
def test_the_storm_bench_at_a_tiny_size(tmp_path):
    out = tmp_path / "storm.json"
    run = bench(
        "storm", *("--hearts", "20", "--fast", "600", "--past", "1500", "--past-rate", "1000"),
        *("--limit", "512", "--hold", "2", "--after", "3", "--json", str(out)),
    )  # fmt: skip
    stdout, stderr = run.communicate(timeout=140)
    assert run.returncode == 0, stdout + stderr
    rows = {(r["storm"], r["monitor"]): r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {(s, m) for s in ("fast", "past-limit") for m in ("greenheart", "raw")}
    for row in rows.values():
        assert row["connections"] > 0 and row["after_registered_periods"] is not None
    assert rows[("fast", "greenheart")]["failed"] == 0
    past = rows[("past-limit", "greenheart")]
    assert past["failed"] == past["false_failures"] == 0
    assert past["refusing"][:2] == [True, False]  # out of descriptors, then admitting again
    assert "us/conn" in stdout


def test_a_monitor_that_skips_beats_is_not_credited_with_the_period_asked():
    skipping = attrs.evolve(result("ipyparallel", 4000, 80), beats=8, beats_asked=12.5)
    assert not skipping.good
    assert "made 8 of 12 beats asked (64% < 98%)" in skipping.verdict
    assert attrs.evolve(skipping, beats=13).good


def test_a_step_lost_by_the_fleet_says_so():
    lost = attrs.evolve(
        result("greenheart", 4000, 50, on_time=90.0), fleet_pings=163, fleet_skipped_pings=37
    )
    assert not lost.good and lost.fleet_behind
    assert "the fleet fell behind, not the monitor (37 pings skipped" in lost.verdict
    assert "fleet fell behind" not in attrs.evolve(lost, on_time_percent=100.0).verdict
    # a ping skipped now and then is a fleet keeping up
    assert not attrs.evolve(lost, fleet_pings=199, fleet_skipped_pings=1).fleet_behind


def test_a_summed_step_counts_the_beats_the_period_asked_for():
    beats = [beat(10.0 + 0.2 * n, 5.0, 100, lag_ms=n / 10) for n in range(11)]
    summed = summarise("raw", Step(100, 100), beats)  # a beat every 200 ms, asked every 100
    assert summed.beats == 10 and summed.beats_asked == pytest.approx(20)
    assert not summed.good and summed.ping_lag_p99_ms == pytest.approx(1.0)


def test_the_soak_pairs_each_kill_with_the_failure_that_answers_it():
    kills = [("a", 1.0), ("a", 5.0), ("b", 2.0), ("c", 9.5)]
    failures = [("a", 1.3), ("a", 5.2), ("b", 2.4), ("b", 3.0), ("d", 4.0)]
    latencies, false, undetected = match(kills, failures, until=9.0)
    assert latencies == pytest.approx([0.2, 0.3, 0.4])
    assert false == [("b", 3.0), ("d", 4.0)]  # b failed twice for one death; d never died
    assert undetected == []  # c died too late to have been judged yet
    assert match([("a", 1.0), ("a", 2.0)], [("a", 2.1)], until=9.0)[2] == [("a", 1.0)]


def test_the_controller_bench_says_when_engines_left_a_stalled_heart_monitor():
    row = {"period_ms": 1000.0, "engines": 500, "monitor_cpu_percent": 2.0, "detect_max_ms": 20}
    rows = [
        {**row, "controller": "greenheart", "left": 0},
        {**row, "controller": "stock", "left": 7},
    ]
    text = controller_summary(rows)
    assert "stock @ 1000 ms, 500 engines: 7 engines left" in text
    assert "greenheart @ 1000 ms, 500 engines:" not in text


@pytest.mark.timeout(180)
def test_the_ipyparallel_bench_at_a_tiny_size(tmp_path):
    out, png = tmp_path / "ipyparallel.json", tmp_path / "ipyparallel.png"
    run = bench(
        "ipyparallel", *("--engines", "20", "--periods", "500", "--kills", "3", "--hold", "2"),
        *("--json", str(out), "--plot", str(png)),
    )  # fmt: skip
    stdout, stderr = run.communicate(timeout=170)
    assert run.returncode == 0, stderr
    rows = {r["controller"]: r for r in json.loads(out.read_text())["rows"]}
    for row in rows.values():
        assert (row["registered"], row["purged"], row["lost"], row["detected"]) == (20, 0, 0, 3)
        assert row["left"] == 0
        assert row["monitor_found"]  # the heart monitor's CPU is its own process's
    # a closed connection is news at once; the stock monitor waits for 11 missed beats
    assert rows["greenheart"]["detect_max_ms"] < 500 < 11 * 500 < rows["stock"]["detect_p50_ms"]
    assert "crash detection" in stdout and png.read_bytes()[:4] == b"\x89PNG"


def test_a_step_lost_by_its_fleet_is_run_once_more_and_only_once():
    lost = attrs.evolve(
        result("greenheart", 4000, 50, on_time=90.0), fleet_pings=163, fleet_skipped_pings=37
    )
    assert run_again(lost, runs=1) and not run_again(lost, runs=2)
    assert not run_again(attrs.evolve(lost, fleet_skipped_pings=0), runs=1)  # the monitor's
    assert not run_again(attrs.evolve(lost, on_time_percent=100.0), runs=1)  # good anyway
    noted = attrs.evolve(lost, on_time_percent=100.0, note="run 2 times")
    assert noted.good and noted.verdict == "ok (run 2 times)"


@pytest.mark.timeout(60)
def test_a_pinned_monitor_runs_on_its_own_cpu_threads_included():
    from greenheart.bench.child import Child
    from greenheart.bench.lines import Ready
    from greenheart.bench.runner import pinned_cpus

    monitor_cpus, load_cpus = pinned_cpus()
    assert monitor_cpus == ["--cpus=0"] and load_cpus[0].startswith("--cpus=1")
    child = Child.program("raw", "raw", "--period=100", *monitor_cpus)
    try:
        child.expect(Ready, 30)  # bound: its ZeroMQ context and I/O thread exist
        tasks = list(Path(f"/proc/{child.pid}/task").iterdir())
        assert len(tasks) > 1  # the I/O thread is pinned with the rest
        for task in tasks:
            allowed = [
                line
                for line in (task / "status").read_text().splitlines()
                if "Cpus_allowed_list" in line
            ]
            assert allowed[0].split()[-1] == "0"
    finally:
        child.stop()
