"""Regenerate the summary table of docs/benchmarks.md from bench/results/*.json.

    .venv/bin/python bench/report.py [--check]

Only the block between the two `bench/report.py` markers is rewritten; the sections around it
(how each benchmark runs, what bounds a missed goal) are written by hand. Each row gives the
median and the spread (min–max) of its runs, the floor measured in the same run beside it, the
goal and whether it was met. A result file that is missing leaves its rows out and says so.
`--check` exits 1 when the document is not what the results give (nothing is written).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "benchmarks.md"
BEGIN = "<!-- bench/report.py: generated from bench/results/*.json; edit the results, not this -->"
END = "<!-- bench/report.py: end -->"

Row = tuple[str, str, str, str, str, str, str]
HEADER: Row = ("Id", "What", "Result: median (spread)", "Floor, same run", "Goal", "Met", "Date")


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    if not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def ms(value: float) -> str:
    return f"{value:,.0f} ms" if abs(value) >= 10 else f"{value:.2f} ms"


def spread_ms(s: dict[str, Any]) -> str:
    """`p50 245 ms (233–292)` from a benchlib spread."""
    return f"{ms(s['p50'])} ({s['min']:,.0f}–{s['max']:,.0f})"


def fine_spread_ms(s: dict[str, Any]) -> str:
    return f"{s['p50']:.2f} ms ({s['min']:.2f}–{s['max']:.2f})"


def met(flag: bool) -> str:
    return "yes" if flag else "**no**"


def day(report: dict[str, Any]) -> str:
    date = report.get("date")
    return str(date)[:10] if date else "?"


def p1_rows(r: dict[str, Any], where: str) -> list[Row]:
    floor = r["floor"]["pg_ctl"]["total_ms"]
    tight = r["floor"]["postmaster"]["total_ms"]
    floor_text = (
        f"untar + `pg_ctl start -w`: {spread_ms(floor)}; "
        f"untar + postmaster ready: {ms(tight['p50'])}"
    )
    fs = r["machine"].get("tmpdir_filesystem")
    where = f"{where}, {fs}" if fs and fs != where else where
    rows: list[Row] = []
    for protocol, label in (("libpq", "libpq"), ("grpc", "gRPC")):
        result = r["results"][protocol]
        total = result["phases"]["total_startup_ms"]
        rows.append(
            (
                "P1",
                f"start-up over {label} ({where}), `total_startup_ms` ({total['n']} starts; "
                f"p90 {ms(total['p90'])}, p99 {ms(total['p99'])})",
                spread_ms(total),
                floor_text,
                f"p50 − floor ≤ 50 ms: {result['total_minus_floor_p50_ms']:+.0f} ms",
                met(result["met"]),
                day(r),
            )
        )
    return rows


def p2_rows(r: dict[str, Any]) -> list[Row]:
    labels = {
        "empty": "no spec (`-i`): waits for /configure",
        "config": "`-c` config with keys, no spec",
        "spec": "`-S` spec: answers while the compute starts",
    }
    floor = r["results_ms"]["floor"]
    rows: list[Row] = []
    for mode, label in labels.items():
        s = r["results_ms"][mode]
        rows.append(
            (
                "P2",
                f"exec → `/status` answers, {label} (p90 {ms(s['p90'])})",
                spread_ms(s),
                f"`python -c pass`: {spread_ms(floor)}",
                f"≤ {r['goal_ms']:.0f} ms",
                met(s["p50"] <= r["goal_ms"]),
                day(r),
            )
        )
    return rows


def first_apply_cell(first: dict[str, Any]) -> str:
    runs = first.get("runs") or [first["seconds"]]
    if len(runs) == 1:
        return f"{first['seconds']:.2f} s (one run)"
    return f"{first['seconds']:.2f} s ({min(runs):.2f}–{max(runs):.2f}, {len(runs)} runs)"


def p3_rows(r: dict[str, Any], where: str) -> list[Row]:
    first = r["first_apply"]
    goals = r["goals"]
    baseline = r.get("sequential_baseline_seconds")
    fs = r.get("tmpdir_filesystem", "")
    place = f"{where}, {fs}" if fs and fs != where else where
    runs = [t for values in r["reapply_ms"].values() for t in values]
    return [
        (
            "P3",
            f"catalog from empty: {r['roles']:,} roles + {r['databases']} databases ({place})",
            first_apply_cell(first),
            f"the same DDL one by one on one connection: {baseline:.2f} s" if baseline else "—",
            f"≤ {goals['first_apply_s']:.0f} s",
            met(first["seconds"] <= goals["first_apply_s"]),
            day(r),
        ),
        (
            "P3",
            f"catalog: unchanged re-apply ({place}, {len(runs)} runs)",
            f"{r['reapply_median_ms']:.0f} ms ({min(runs):.0f}–{max(runs):.0f})",
            "—",
            f"≤ {goals['reapply_ms']:.0f} ms",
            met(r["reapply_max_ms"] <= goals["reapply_ms"]),
            day(r),
        ),
    ]


def p4_rows(r: dict[str, Any]) -> list[Row]:
    floor = r["results"]["floor_gzip_tar"]
    size = r["data_bytes"] / (1 << 20)
    rows: list[Row] = []
    for protocol, label in (("libpq", "libpq"), ("grpc", "gRPC")):
        s = r["results"][protocol]
        rows.append(
            (
                "P4",
                f"basebackup of {size:,.0f} MiB over {label} ({r['runs']} runs)",
                f"{s['median_s']:.2f} s ({s['min_s']:.2f}–{s['max_s']:.2f}), "
                f"{s['mib_per_s']:.0f} MiB/s",
                f"`gzip -dc | tar x`: {floor['median_s']:.2f} s "
                f"({floor['min_s']:.2f}–{floor['max_s']:.2f}), {floor['mib_per_s']:.0f} MiB/s",
                f"≥ 0.9× the floor's throughput: {s['vs_floor_throughput']:.2f}×",
                met(s["vs_floor_throughput"] >= 0.9),
                day(r),
            )
        )
    return rows


def p5_rows(r: dict[str, Any]) -> list[Row]:
    seq, load = r["sequential"], r["open_loop"]
    floor_seq, floor_load = r["floor"]["sequential"], r["floor"]["open_loop"]
    goal = r["goals"]["p99_ms"]
    memory = r["memory"]
    return [
        (
            "P5",
            f"{seq['requests']:,} sequential `GET /status`, one keep-alive connection "
            f"(p99 {seq['latency_ms']['p99']:.2f} ms; {seq['requests_per_s']:,} req/s)",
            fine_spread_ms(seq["latency_ms"]),
            f"same client, stub server: {fine_spread_ms(floor_seq['latency_ms'])}, "
            f"p99 {floor_seq['latency_ms']['p99']:.2f} ms",
            f"p99 ≤ {goal:.0f} ms",
            met(r["met"]["sequential_p99"]),
            day(r),
        ),
        (
            "P5",
            f"open loop, {load['rate_per_s']:.0f} req/s for {load['seconds']:.0f} s "
            f"(p90 {load['latency_ms']['p90']:.2f} ms, p99 {load['latency_ms']['p99']:.2f} ms; "
            f"{load['errors']} errors)",
            fine_spread_ms(load["latency_ms"]),
            f"same client, stub server: {fine_spread_ms(floor_load['latency_ms'])}, "
            f"p99 {floor_load['latency_ms']['p99']:.2f} ms",
            f"p99 ≤ {goal:.0f} ms",
            met(r["met"]["open_loop_p99"]),
            day(r),
        ),
        (
            "P5",
            "compute_ctl's memory while serving (VmHWM; VmRSS idle → max under load)",
            f"{memory['hwm_mib']:.1f} MiB = {memory['hwm_mb']:.1f} MB ({memory['idle_mib']:.0f} → "
            f"{memory['max_during_load_mib']:.0f} MiB)",
            "—",
            f"≤ {r['goals']['rss_mb']:.0f} MB",
            met(r["met"]["rss"]),
            day(r),
        ),
    ]


def _over(verdict: dict[str, Any]) -> tuple[str, str]:
    """The goal cell and the met cell of a figure measured against its floor."""
    text = f"p50 − floor ≤ {verdict['goal']:.0f} ms: {verdict['value']:+.0f} ms"
    return text, met(verdict["met"])


def _tails(s: dict[str, Any]) -> str:
    return f"; p90 {ms(s['p90'])}, p99 {ms(s['p99'])}" if s["n"] >= 20 else ""


def _own(idle: dict[str, Any]) -> str:
    """The anonymous part and the private part (USS) of a compute's resident memory."""
    if "rss_anon_mib" not in idle:
        return "?"
    return (
        f"anonymous {idle['rss_anon_mib']:.1f}, USS {idle['uss_mib']:.1f}, "
        f"PSS {idle['pss_mib']:.1f}"
    )


def _first_minute(idle: dict[str, Any]) -> str:
    """The window right after `running`, when the run measured the next one too."""
    if "first_cpu_percent_of_core" not in idle:
        return ""
    return (
        f"; the first window, right after `running`: {idle['first_cpu_ms_scheduler']:.0f} ms, "
        f"{idle['first_cpu_percent_of_core']:.3f} %"
    )


def _cpu_ms(idle: dict[str, Any]) -> float:
    return float(idle.get("cpu_ms_scheduler", idle["cpu_seconds"] * 1000))


def f_rows(r: dict[str, Any], medium: str = "disk") -> list[Row]:
    """F1-F6 (bench/fleet.py), one row per figure and protocol; `medium` is where the data
    directories were (disk, or tmpfs when run with TMPDIR=/dev/shm)."""
    floor = r["floor_postmaster_ms"]
    floor_cell = f"untar + postmaster ready: {spread_ms(floor)}"
    rows: list[Row] = []
    for protocol, res in r["results"].items():
        configure = res["F1_configure_ms"]
        running = res["F2_exec_to_running_ms"]
        total = res["F3_total_startup_ms_pooled"]
        idle, runs = res["F4_F5_idle"], configure["n"]
        par, par_floor = res["F6_per_compute_ms"], res["F6_floor_per_compute_ms"]
        block: list[Row] = [
            (
                "F1",
                f"pooled start over {protocol} ({medium}): empty, idle 2 s, `POST /configure` "
                f"→ 200 ({runs} starts{_tails(configure)})",
                spread_ms(configure),
                floor_cell,
                *_over(res["F1"]),
                day(r),
            ),
            (
                "F2",
                f"`-S` start over {protocol} ({medium}), exec → `running` ({running['n']} starts"
                f"{_tails(running)})",
                spread_ms(running),
                floor_cell,
                *_over(res["F2"]),
                day(r),
            ),
            (
                "F3",
                f"`total_startup_ms` of the pooled start over {protocol} ({medium}) "
                f"(`-S`: {ms(res['F3_total_startup_ms_direct']['p50'])})",
                spread_ms(total),
                floor_cell,
                *_over(res["F3"]),
                day(r),
            ),
            (
                "F4",
                f"compute_ctl's memory after {r['idle_seconds']:.0f} s `running` over {protocol} "
                f"(VmHWM; VmRSS {idle['vmrss_mib']:.1f} MiB of which {_own(idle)}; "
                f"{idle['threads']} threads)",
                f"{idle['vmhwm_mib']:.1f} MiB",
                "—",
                f"VmHWM ≤ {res['F4']['goal']:.0f} MiB",
                met(res["F4"]["met"]),
                day(r),
            ),
            (
                "F5",
                f"idle CPU over {r['idle_seconds']:.0f} s `running` over {protocol}"
                f"{', the window after the first' if 'first_cpu_ms_scheduler' in idle else ''}, "
                f"activity monitor on ({_cpu_ms(idle):.0f} ms on a CPU{_first_minute(idle)})",
                f"{idle['cpu_percent_of_core']:.3f} % of a core",
                "—",
                f"≤ {res['F5']['goal']:.1f} %",
                met(res["F5"]["met"]),
                day(r),
            ),
            (
                "F6",
                f"{r['parallel']} pooled computes over {protocol} ({medium}) configured at once, "
                "each one's "
                f"`/configure` → 200 (all running after {ms(res['F6_all_running_ms'])})",
                spread_ms(par),
                f"{r['parallel']} floors at once: {spread_ms(par_floor)}",
                *_over(res["F6"]),
                day(r),
            ),
        ]
        rows += [block[0], *_spare_rows(r, res, floor_cell, medium), *block[1:]]
    return rows


def _spare_rows(r: dict[str, Any], res: dict[str, Any], floor_cell: str, medium: str) -> list[Row]:
    """F1 over gRPC with the child kept ready while empty, when the run measured it."""
    if "F1_spare" not in res:
        return []
    configure, child = res["F1_spare_configure_ms"], res["F1_spare_child"]
    return [
        (
            "F1",
            f"pooled start over grpc ({medium}), `COMPUTE_CTL_GRPC_CHILD_WHILE_EMPTY=1`: the "
            "child kept "
            f"ready while empty holds VmRSS {child['child_vmrss_mib']:.1f} MiB, USS "
            f"{child['child_uss_mib']:.1f}, PSS {child['child_pss_mib']:.1f} "
            f"({configure['n']} starts{_tails(configure)})",
            spread_ms(configure),
            floor_cell,
            *_over(res["F1_spare"]),
            day(r),
        )
    ]


def machine_line(reports: list[dict[str, Any]]) -> str:
    for report in reports:
        machine = report.get("machine")
        if isinstance(machine, dict) and "postgres" in machine:
            return (
                f"Machine: {machine['arch']}, {machine['cpus']} cores, {machine['system']}; "
                f"Python {machine['python']}; {machine['postgres']}."
            )
    return "Machine: unknown (no result records it)."


def render() -> str:
    sources: list[tuple[str, Callable[[dict[str, Any]], list[Row]]]] = [
        ("startup", lambda r: p1_rows(r, "disk")),
        ("startup-tmpfs", lambda r: p1_rows(r, "tmpfs")),
        ("status_latency", p2_rows),
        ("catalog", lambda r: p3_rows(r, "disk")),
        ("catalog-tmpfs", lambda r: p3_rows(r, "tmpfs")),
        ("basebackup", p4_rows),
        ("api_latency", p5_rows),
        ("fleet", f_rows),
        ("fleet-tmpfs", lambda r: f_rows(r, "tmpfs")),
    ]
    rows: list[Row] = []
    missing: list[str] = []
    reports: list[dict[str, Any]] = []
    for name, make_rows in sources:
        report = load(name)
        if report is None:
            missing.append(f"`bench/results/{name}.json`")
            continue
        reports.append(report)
        rows.extend(make_rows(report))
    lines = [
        BEGIN,
        "",
        machine_line(reports),
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    if missing:
        lines += ["", f"Not measured yet: {', '.join(missing)}."]
    lines += ["", END]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare, write nothing")
    args = parser.parse_args()
    text = DOC.read_text()
    block = render()
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        new = head + block + tail
    else:  # first run: the table goes after the introduction (the first blank line after it)
        title, _, body = text.partition("\n\n")
        intro, _, sections = body.partition("\n\n")
        new = f"{title}\n\n{intro}\n\n{block}\n\n{sections}"
    if args.check:
        return 0 if new == text else 1
    DOC.write_text(new)
    print(f"[report] {DOC.relative_to(ROOT)}: {block.count(chr(10) + '| P')} rows", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
