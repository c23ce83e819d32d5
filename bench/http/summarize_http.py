#!/usr/bin/env python3
"""Summarizes a bench/http/run_http_bench.sh result: a Markdown report and an SVG chart.

    python3 bench/http/summarize_http.py bench/results/http-TIMESTAMP.json [--svg FILE]

Markdown (standard output): one row per server, endpoint and concurrency (requests/s, p50, p99,
503s, responses other than 200/503 and socket errors), the ratios of each of our modes to the
Node seed at each point, the memory point, and the targets, each met or missed. The SVG (when
--svg is given) has requests/s and p99 against concurrency, one line per server, for each
endpoint; it is drawn by bench/svg_chart.py, standard library only.
"""

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import svg_chart  # noqa: E402  (bench/svg_chart.py, shared with bench/summarize.py)

ORDER = ["spawn", "pool", "node"]
LABELS = {"spawn": "btq spawn", "pool": "btq pool", "node": "Node seed"}
COLORS = {"spawn": "#d95f02", "pool": "#1b9e77", "node": "#7570b3"}
ENDPOINTS = ["/api/queue-stats", "/api/schedules"]


def percentile_ms(point: dict, p: str) -> float:
    return point["wrk"]["latency_us"]["percentiles"][p] / 1000.0


def other_count(point: dict) -> int:
    """Responses other than 200 and 503."""
    return sum(n for status, n in point["wrk"]["statuses"].items() if status not in ("200", "503"))


def socket_errors(point: dict) -> int:
    errors = point["wrk"]["errors"]
    return errors["connect"] + errors["read"] + errors["write"] + errors["timeout"]


def fmt_rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def fmt_ms(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def fmt_ratio(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{value:,.1f}x" if value >= 10 else f"{value:.2f}x"


def index_points(result: dict) -> dict:
    return {(p["server"], p["endpoint"], p["concurrency"]): p for p in result["points"]}


def markdown(result: dict) -> str:
    points = index_points(result)
    config = result["config"]
    machine = result["machine"]
    lines = []
    lines.append(f"## HTTP load: schedule_server vs the Node seed ({result['started']})")
    lines.append("")
    lines.append(
        f"{machine['cpus']} CPUs shared by wrk ({config['wrk_threads']} threads), the server and "
        f"its workers; {config['duration_s']:g} s per point; {config['schedules']} schedules; "
        f"pool size {config['pool_size']} everywhere; schedule_server --threads "
        f"{config['server_threads']}, queue capacity {config['server_queue_capacity']}; Node "
        f"{machine['node']}, Express {machine['express']}; load average at start "
        f"{machine['loadavg_start']}, at end {machine['loadavg_end']}.")
    lines.append("")
    lines.append("| server | endpoint | concurrency | requests/s | p50 ms | p99 ms | 503 | "
                 "other than 200/503 | socket errors |")
    lines.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for endpoint in ENDPOINTS:
        levels = sorted({c for (_, e, c) in points if e == endpoint})
        for level in levels:
            for server in ORDER:
                point = points.get((server, endpoint, level))
                if point is None:
                    continue
                wrk = point["wrk"]
                lines.append(
                    f"| {LABELS[server]} | {endpoint} | {level} | {fmt_rate(wrk['requests_per_s'])} "
                    f"| {fmt_ms(percentile_ms(point, '50'))} | {fmt_ms(percentile_ms(point, '99'))} "
                    f"| {wrk['statuses'].get('503', 0)} | {other_count(point)} "
                    f"| {socket_errors(point)} |")
    lines.append("")
    lines.append("Ratios to the Node seed (requests/s: ours ÷ Node, higher is better; p99: "
                 "Node ÷ ours, higher is better):")
    lines.append("")
    lines.append("| endpoint | concurrency | spawn req/s | pool req/s | spawn p99 | pool p99 |")
    lines.append("| --- | ---: | ---: | ---: | ---: | ---: |")
    for endpoint in ENDPOINTS:
        levels = sorted({c for (_, e, c) in points if e == endpoint})
        for level in levels:
            node = points.get(("node", endpoint, level))
            cells = []
            for metric in ("rate", "p99"):
                for server in ("spawn", "pool"):
                    ours = points.get((server, endpoint, level))
                    if node is None or ours is None:
                        cells.append("–")
                    elif metric == "rate":
                        cells.append(fmt_ratio(ours["wrk"]["requests_per_s"] /
                                               max(node["wrk"]["requests_per_s"], 1e-9)))
                    else:
                        cells.append(fmt_ratio(percentile_ms(node, "99") /
                                               max(percentile_ms(ours, "99"), 1e-9)))
            lines.append(f"| {endpoint} | {level} | " + " | ".join(cells) + " |")
    lines.append("")

    memory = {m["server"]: m for m in result.get("memory", [])}
    if memory:
        lines.append(f"Memory: {config['hold_connections']} keep-alive connections, each sending "
                     "GET /api/schedules at once (VmRSS peaks, sampled every 50 ms):")
        lines.append("")
        lines.append("| server | server RSS idle MiB | server RSS peak MiB | workers at peak | "
                     "workers RSS peak MiB | answers | open at end | last answer s | "
                     "peak queued | Node ÷ ours (server RSS) |")
        lines.append("| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |")
        node_peak = memory.get("node", {}).get("server_rss_peak_kib")
        for server in ORDER:
            m = memory.get(server)
            if m is None:
                continue
            answers = ", ".join(f"{n}×{s}" for s, n in sorted(m["statuses"].items()))
            if m.get("failures"):
                answers += "; failures " + ", ".join(f"{n}×{k}" for k, n in m["failures"].items())
            ratio = ("–" if server == "node" or not node_peak
                     else fmt_ratio(node_peak / max(m["server_rss_peak_kib"], 1)))
            stats = m.get("queue_stats_after") or {}
            lines.append(
                f"| {LABELS[server]} | {m['server_rss_idle_kib'] / 1024:.1f} "
                f"| {m['server_rss_peak_kib'] / 1024:.1f} | {m['workers_peak_count']} "
                f"| {m['workers_rss_peak_kib'] / 1024:.1f} | {answers} "
                f"| {m['connections_open_at_end']}/{m['connections_opened']} "
                f"| {m['last_answer_s']:.2f} | {stats.get('peakQueueSize', '–')} | {ratio} |")
        lines.append("")

    lines.extend(targets(result, points, memory))
    return "\n".join(lines) + "\n"


def targets(result: dict, points: dict, memory: dict) -> list[str]:
    out = ["Targets:", ""]

    def rate_ratio(server: str, endpoint: str) -> list[tuple[int, float]]:
        ratios = []
        for (s, e, c), point in sorted(points.items(), key=lambda kv: kv[0][2]):
            if s == server and e == endpoint and ("node", e, c) in points:
                node = points[("node", e, c)]["wrk"]["requests_per_s"]
                ratios.append((c, point["wrk"]["requests_per_s"] / max(node, 1e-9)))
        return ratios

    def check(label: str, ratios: list[tuple[int, float]], want: float) -> str:
        if not ratios:
            return f"- {label}: no data"
        worst = min(r for _, r in ratios)
        detail = ", ".join(f"c={c}: {fmt_ratio(r)}" for c, r in ratios)
        verdict = "met" if worst >= want else "missed"
        return f"- {label} ≥ {want:g}x: **{verdict}** ({detail})"

    for server in ("spawn", "pool"):
        out.append(check(f"/api/queue-stats req/s, {LABELS[server]} vs Node",
                         rate_ratio(server, "/api/queue-stats"), 10))
    out.append(check("/api/schedules req/s, btq spawn vs Node",
                     rate_ratio("spawn", "/api/schedules"), 2))
    out.append(check("/api/schedules req/s, btq pool vs Node",
                     rate_ratio("pool", "/api/schedules"), 20))

    node_peak = memory.get("node", {}).get("server_rss_peak_kib")
    for server in ("spawn", "pool"):
        ours = memory.get(server, {}).get("server_rss_peak_kib")
        if node_peak and ours:
            verdict = "met" if ours * 5 <= node_peak else "missed"
            out.append(f"- server RSS with {result['config']['hold_connections']} connections ≤ "
                       f"1/5 of Node's, {LABELS[server]}: **{verdict}** ({ours / 1024:.1f} MiB vs "
                       f"{node_peak / 1024:.1f} MiB, {node_peak / ours:.1f}x less)")

    for server in ("spawn", "pool"):
        worse = []
        total = 0
        for (s, e, c), point in points.items():
            node = points.get(("node", e, c))
            if s != server or node is None:
                continue
            total += 1
            if percentile_ms(point, "99") >= percentile_ms(node, "99"):
                worse.append(f"{e} c={c}: {fmt_ms(percentile_ms(point, '99'))} ms vs "
                             f"{fmt_ms(percentile_ms(node, '99'))} ms")
        verdict = "met" if not worse and total else "missed"
        detail = f"; not below at {'; '.join(worse)}" if worse else f" ({total} points)"
        out.append(f"- p99 below Node's at every point, {LABELS[server]}: **{verdict}**{detail}")

    bad = []
    for (s, e, c), point in sorted(points.items()):
        if s in ("spawn", "pool"):
            if other_count(point) or socket_errors(point):
                bad.append(f"{LABELS[s]} {e} c={c}: {other_count(point)} other, "
                           f"{socket_errors(point)} socket errors "
                           f"{json.dumps(point['wrk'].get('sample_bodies', {}))}")
    for server in ("spawn", "pool"):
        m = memory.get(server)
        if m:
            others = {k: v for k, v in m["statuses"].items() if k not in ("200", "503")}
            if others or m.get("failures"):
                bad.append(f"{LABELS[server]} memory point: {others} {m.get('failures')}")
    out.append("- no response other than 200 or 503 from our server: **"
               + ("met**" if not bad else "missed** (" + "; ".join(bad) + ")"))
    node_bad = [f"{e} c={c}: {other_count(p)} other, {socket_errors(p)} socket errors"
                for (s, e, c), p in sorted(points.items())
                if s == "node" and (other_count(p) or socket_errors(p))]
    if node_bad:
        out.append("  (Node seed, for reference: " + "; ".join(node_bad) + ")")
    out.append("")
    return out


# --- SVG -------------------------------------------------------------------------------------

def svg(result: dict) -> str:
    points = index_points(result)
    width, height = 920, 640
    panel_w, panel_h = width / 2, (height - 80) / 2
    out = svg_chart.header(
        width, height, "schedule_server (btq) vs the Node seed: HTTP load, pool size 4",
        f"{result['machine']['cpus']} CPUs shared by wrk, server and workers; "
        f"{result['config']['duration_s']:g} s per point; {result['started']}")
    for row, endpoint in enumerate(ENDPOINTS):
        for column, (metric, label) in enumerate((("rate", "requests/s"), ("p99", "p99 latency, ms"))):
            series: dict[str, list[tuple[int, float]]] = {}
            for (server, e, c), point in sorted(points.items(), key=lambda kv: kv[0][2]):
                if e != endpoint:
                    continue
                value = (point["wrk"]["requests_per_s"] if metric == "rate"
                         else percentile_ms(point, "99"))
                series.setdefault(server, []).append((c, value))
            out.extend(svg_chart.panel(column * panel_w, 50 + row * panel_h, panel_w, panel_h,
                                       f"{endpoint}: {label}", label, series,
                                       x_label="concurrent connections", order=ORDER,
                                       labels=LABELS, colors=COLORS, x_unit="connections"))
    out.extend(svg_chart.legend(ORDER, LABELS, COLORS, x=width / 2 - 180, y=height - 16, step=130))
    return svg_chart.footer(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("result", help="bench/results/http-TIMESTAMP.json")
    parser.add_argument("--svg", help="write the chart here (e.g. docs/images/http-bench.svg)")
    args = parser.parse_args()
    with open(args.result, encoding="utf-8") as handle:
        result = json.load(handle)
    sys.stdout.write(markdown(result))
    if args.svg:
        with open(args.svg, "w", encoding="utf-8") as handle:
            handle.write(svg(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
