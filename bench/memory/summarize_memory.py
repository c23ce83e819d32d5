#!/usr/bin/env python3
"""Summarizes a bench/memory/run_memory_bench.sh result: the seed's tables, measured, and a chart.

    python3 bench/memory/summarize_memory.py bench/results/memory-TIMESTAMP.json \
        [--markdown bench/results/memory.md] [--svg bench/results/memory.svg]

Markdown in the seed's shape ("Memory Usage" and "Process Count": rows are requests at once,
columns the four servers), then the answers by status, the latency of the 200 answers, the
private part of the same peaks, and the runaway scenario. A point whose tree passed the
ceiling reads "stopped at ceiling (N MB)": the seed's "Crash". The SVG has peak total memory and
peak worker processes against concurrency, one line per server (bench/svg_chart.py). Standard
library only.
"""

import argparse
import sys
from pathlib import Path
import json

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import svg_chart  # noqa: E402  (bench/svg_chart.py, shared with the other summaries)

ORDER = ["before", "queue", "spawn", "pool"]
LABELS = {"before": "before (Node, no queue)", "queue": "TaskQueue(4) (Node)",
          "spawn": "btq spawn", "pool": "btq pool"}
SHORT = {"before": "Node before", "queue": "Node TaskQueue(4)", "spawn": "btq spawn",
         "pool": "btq pool"}
COLORS = {"before": "#e7298a", "queue": "#7570b3", "spawn": "#d95f02", "pool": "#1b9e77"}


def mb(kib: float) -> float:
    return kib / 1024.0


def fmt_mb(kib: float) -> str:
    value = mb(kib)
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def fmt_s(ms: float | None) -> str:
    if ms is None:
        return "–"
    return f"{ms / 1000:.2f}" if ms < 10000 else f"{ms / 1000:.1f}"


def outcomes_text(outcomes: dict[str, int]) -> str:
    def key(item):
        name = item[0]
        return (0, int(name)) if name.isdigit() else (1, name)
    return ", ".join(f"{name}: {count:,}" for name, count in sorted(outcomes.items(), key=key))


def stopped_text(point: dict) -> str | None:
    stopped = point["memory"]["stopped_at_ceiling"]
    if not stopped:
        return None
    what = "ceiling" if stopped.get("reason", "ceiling") == "ceiling" else "host floor"
    return f"stopped at {what} ({mb(stopped['rss_kib']):,.0f} MB)"


def servers_of(result: dict) -> list[str]:
    return [name for name in ORDER if name in result["config"]["servers"]]


def index(result: dict, scenario: str) -> dict:
    return {(p["server"], p["concurrency"]): p for p in result["points"]
            if p["scenario"] == scenario}


def table(header: list[str], rows: list[list[str]], right_from: int = 1) -> list[str]:
    lines = ["| " + " | ".join(header) + " |",
             "| " + " | ".join("---" if i < right_from else "---:"
                               for i in range(len(header))) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def markdown(result: dict) -> str:
    config, machine = result["config"], result["machine"]
    servers = servers_of(result)
    main = index(result, "main")
    levels = config["concurrency"]
    header = ["requests at once"] + [LABELS[s] for s in servers]
    lines = [f"## Memory: the seed's table, measured ({result['started']})", ""]
    lines.append(
        f"Work per request: `schedule_worker memory_probe` touching {config['probe_mb']} MB "
        f"(steps of {config['step_mb']} MB every {config['step_ms']} ms) and holding it "
        f"{config['hold_ms']} ms (`{config['probe']}`). Pool size {config['pool_size']} "
        f"everywhere; btq with `--task-memory-limit {config['task_memory_limit']}`"
        + (f" `{config['btq_server_args']}`" if config["btq_server_args"] else "")
        + f"; ceiling {config['ceiling_mb']:,} MB; sampled every {config['interval_ms']:g} ms; "
        "MB here are MiB (2^20 bytes), as the probe counts them. "
        f"{machine['cpus']} CPUs, {machine['memory_total_kib'] / 1048576:.0f} GiB, kernel "
        f"{machine['kernel']}, Node {machine['node']}, Express {machine['express']}; load "
        f"average at start {machine['loadavg_start']}, at end {' '.join(machine['loadavg_end'])}.")
    lines.append("")

    def section(title: str, note: str, cell, idle=None, right_aligned: bool = True) -> None:
        """One table: a row per level (an "idle" row first when `idle` is given), a column per
        server; cell(point) and idle(point) make a cell's text, "–" where there is no point."""
        if title:
            lines.extend([f"### {title}", ""])
        lines.extend([note, ""])
        rows = []
        if idle is not None:
            first = [main.get((s, levels[0])) for s in servers]
            rows.append(["idle"] + [idle(p) if p else "–" for p in first])
        for level in levels:
            points = [main.get((s, level)) for s in servers]
            rows.append([f"{level:,}"] + [cell(p) if p else "–" for p in points])
        lines.extend(table(header, rows, right_from=1 if right_aligned else len(header)))
        lines.append("")

    def children(point: dict) -> str:
        count = f"{point['memory']['peak']['children']:,}"
        return f"{count} (then stopped)" if point["memory"]["stopped_at_ceiling"] else count

    def latency(point: dict) -> str:
        ms = point["latency_ms_200"]
        return f"{fmt_s(ms['p50'])} / {fmt_s(ms['p99'])}" if ms["count"] else "–"

    section("Memory Usage", "Peak total resident memory of the server and all its descendants, "
            "MB (the sum of their VmRSS, from `/proc/PID/statm`).",
            lambda p: stopped_text(p) or fmt_mb(p["memory"]["peak"]["rss_kib"]),
            idle=lambda p: fmt_mb(p["memory"]["idle"]["rss_kib"]))
    section("Process Count", "Peak live worker processes (descendants of the server, zombies "
            "not counted).", children, idle=lambda p: str(p["memory"]["idle"]["children"]))
    section("Answers", "By HTTP status, or how the request failed (`connection closed`: the "
            "server was stopped at the ceiling; `timeout`: no answer within the request timeout).",
            lambda p: outcomes_text(p["outcomes"]), right_aligned=False)
    section("Latency", "p50 / p99 of the 200 answers, seconds, from the request's write to the "
            "end of its answer.", latency)
    section("", "The private part of the same peak (resident minus file-backed and shared "
            "pages, which the sum above counts once per process that maps them), MB:",
            lambda p: fmt_mb(p["memory"]["peak"]["private_kib"]))
    every = list(main.values()) + list(index(result, "runaway").values())
    medians = [p["memory"]["sample_ms_median"] for p in every]
    lines.append(
        f"The sampler ran at {', '.join(sorted({p['memory']['priority'] for p in every}))}; one "
        f"sample of a tree took {min(medians):.1f}–{max(medians):.1f} ms (median per point), at "
        f"most {max(p['memory']['sample_ms_max'] for p in every):.0f} ms; the longest gap "
        f"between two samples was {max(p['memory']['gap_ms_max'] for p in every):.0f} ms.")
    lines.append("")

    runaway = index(result, "runaway")
    if runaway:
        lines.append("### One runaway among the others")
        lines.append("")
        any_point = next(iter(runaway.values()))
        lines.append(
            f"{any_point['concurrency']} requests at once: {any_point['requests']} of the work "
            f"above and one (the middle one) `{config['runaway_probe']}`, which keeps allocating "
            f"to {config['runaway_probe'].split('mb=')[1].split('&')[0]} MB unless it is stopped.")
        lines.append("")
        header2 = ["server", "the runaway's answer", "its process's peak, MB",
                   f"the other {any_point['requests']}", "their p50 / p99, s",
                   "peak total, MB"]
        rows = []
        for s in servers:
            for (name, _), point in runaway.items():
                if name != s:
                    continue
                run = point["runaway"]
                answer = str(run.get("status", run.get("failure", "–")))
                body = run.get("body", "")
                if run.get("status") == 200:
                    try:
                        peak = json.loads(body).get("peakResidentBytes")
                        if peak:
                            answer += f" (it reports a peak of {peak / 1048576:,.0f} MB)"
                    except (ValueError, AttributeError):
                        pass
                rows.append([
                    LABELS[s], answer, fmt_mb(point["memory"]["peak"]["child_rss_kib"]),
                    outcomes_text(point["outcomes"]), latency(point),
                    stopped_text(point) or fmt_mb(point["memory"]["peak"]["rss_kib"])])
        lines += table(header2, rows, right_from=6)
        lines[-len(rows) - 1] = "| --- | --- | ---: | --- | ---: | ---: |"
        lines.append("")
        lines.append("Its process's peak: the largest VmRSS (or VmHWM) any one descendant of the "
                     "server reached, sampled; the runaway is the only one past the others' "
                     f"{config['probe_mb']} MB.")
        bodies = {s: p["runaway"].get("body", "")[:200] for (s, _), p in runaway.items()
                  if p["runaway"].get("status") not in (None, 200)}
        for s in servers:
            if bodies.get(s):
                lines.append(f"- {SHORT[s]}: the runaway's answer body `{bodies[s].strip()}`")
        lines.append("")
    return "\n".join(lines)


def svg(result: dict) -> str:
    servers = servers_of(result)
    main = index(result, "main")
    width, height = 920, 380
    panel_w, panel_h = width / 2, height - 80
    stopped = [f"{SHORT[s]} at {c:,}" for (s, c), p in sorted(main.items())
               if p["memory"]["stopped_at_ceiling"]]
    subtitle = (f"{result['config']['probe_mb']} MB held {result['config']['hold_ms']} ms per "
                f"request; pool size 4; {result['started']}")
    if stopped:
        subtitle += (f"; stopped at the {result['config']['ceiling_mb']:,} MB ceiling: "
                     + ", ".join(stopped) + " (its value at the stop)")
    out = svg_chart.header(width, height, "Memory of the server and all its workers, "
                           "against requests at once", subtitle)
    for column, (metric, title) in enumerate(
            (("rss", "peak total resident, MB"), ("children", "peak worker processes"))):
        series: dict[str, list[tuple[int, float]]] = {}
        for (s, c), point in sorted(main.items(), key=lambda kv: kv[0][1]):
            value = (mb(point["memory"]["peak"]["rss_kib"]) if metric == "rss"
                     else point["memory"]["peak"]["children"])
            series.setdefault(s, []).append((c, value))
        out.extend(svg_chart.panel(column * panel_w, 50, panel_w, panel_h, title, title, series,
                                   x_label="requests at once", order=servers, labels=SHORT,
                                   colors=COLORS, x_unit="requests"))
    out.extend(svg_chart.legend(servers, SHORT, COLORS, x=width / 2 - 300, y=height - 12,
                                step=160))
    return svg_chart.footer(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("result")
    parser.add_argument("--markdown", help="write the Markdown here (else standard output)")
    parser.add_argument("--svg", help="write the chart here")
    args = parser.parse_args()
    result = json.loads(Path(args.result).read_text(encoding="utf-8"))
    text = markdown(result) + "\n"
    if args.markdown:
        Path(args.markdown).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    if args.svg:
        Path(args.svg).write_text(svg(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
