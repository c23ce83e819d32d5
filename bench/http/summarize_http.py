#!/usr/bin/env python3
"""Summarizes a bench/http/run_http_bench.sh result: a Markdown report and an SVG chart.

    python3 bench/http/summarize_http.py bench/results/http-TIMESTAMP.json [--svg FILE]

Markdown (standard output): one row per server, endpoint and concurrency (requests/s, p50, p99,
503s, responses other than 200/503 and socket errors), the ratios of each of our modes to the
Node seed at each point, the memory point, and the targets, each met or missed. The SVG (when
--svg is given) has requests/s and p99 against concurrency, one line per server, for each
endpoint; it is written by hand with the standard library.
"""

import argparse
import json
import math
import sys
from xml.sax.saxutils import escape

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

def log_ticks(low: float, high: float) -> list[float]:
    ticks = []
    exponent = math.floor(math.log10(low))
    while 10 ** exponent <= high * 1.0001:
        for mantissa in (1, 2, 5):
            value = mantissa * 10 ** exponent
            if low * 0.9999 <= value <= high * 1.0001:
                ticks.append(value)
        exponent += 1
    return ticks


def tick_label(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def panel(x0: float, y0: float, width: float, height: float, title: str, y_label: str,
          series: dict[str, list[tuple[int, float]]]) -> list[str]:
    out = []
    left, right, top, bottom = 62, 14, 28, 38
    px, py = x0 + left, y0 + top
    pw, ph = width - left - right, height - top - bottom
    values = [v for pts in series.values() for _, v in pts if v > 0]
    levels = sorted({c for pts in series.values() for c, _ in pts})
    out.append(f'<text x="{x0 + width / 2:.1f}" y="{y0 + 16}" text-anchor="middle" '
               f'font-weight="bold">{escape(title)}</text>')
    if not values or not levels:
        return out
    low = 10 ** math.floor(math.log10(min(values)))
    high = 10 ** math.ceil(math.log10(max(values)))
    if high <= low:
        high = low * 10

    def y_of(value: float) -> float:
        return py + ph - (math.log10(value) - math.log10(low)) / (math.log10(high) - math.log10(low)) * ph

    def x_of(level: int) -> float:
        if len(levels) == 1:
            return px + pw / 2
        return px + levels.index(level) / (len(levels) - 1) * pw

    out.append(f'<rect x="{px}" y="{py}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>')
    for tick in log_ticks(low, high):
        y = y_of(tick)
        major = math.isclose(math.log10(tick), round(math.log10(tick)))
        out.append(f'<line x1="{px}" y1="{y:.1f}" x2="{px + pw}" y2="{y:.1f}" '
                   f'stroke="{"#ccc" if major else "#eee"}"/>')
        out.append(f'<text x="{px - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">'
                   f'{tick_label(tick)}</text>')
    for level in levels:
        x = x_of(level)
        out.append(f'<line x1="{x:.1f}" y1="{py + ph}" x2="{x:.1f}" y2="{py + ph + 4}" stroke="#999"/>')
        out.append(f'<text x="{x:.1f}" y="{py + ph + 17}" text-anchor="middle" font-size="11">'
                   f'{level}</text>')
    out.append(f'<text x="{px + pw / 2:.1f}" y="{py + ph + 32}" text-anchor="middle" '
               f'font-size="11">concurrent connections</text>')
    out.append(f'<text transform="translate({x0 + 14},{py + ph / 2:.1f}) rotate(-90)" '
               f'text-anchor="middle" font-size="11">{escape(y_label)} (log scale)</text>')
    for server in ORDER:
        pts = [(c, v) for c, v in series.get(server, []) if v > 0]
        if not pts:
            continue
        path = " ".join(f"{x_of(c):.1f},{y_of(v):.1f}" for c, v in pts)
        color = COLORS[server]
        out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for c, v in pts:
            out.append(f'<circle cx="{x_of(c):.1f}" cy="{y_of(v):.1f}" r="3" fill="{color}">'
                       f'<title>{LABELS[server]}, {c} connections: {v:,.2f}</title></circle>')
    return out


def svg(result: dict) -> str:
    points = index_points(result)
    width, height = 920, 640
    panel_w, panel_h = width / 2, (height - 80) / 2
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">'
           f'schedule_server (btq) vs the Node seed: HTTP load, pool size 4</text>',
           f'<text x="{width / 2}" y="40" text-anchor="middle" font-size="11" fill="#555">'
           f'{escape(str(result["machine"]["cpus"]))} CPUs shared by wrk, server and workers; '
           f'{result["config"]["duration_s"]:g} s per point; {escape(result["started"])}</text>']
    for row, endpoint in enumerate(ENDPOINTS):
        for column, (metric, label) in enumerate((("rate", "requests/s"), ("p99", "p99 latency, ms"))):
            series: dict[str, list[tuple[int, float]]] = {}
            for (server, e, c), point in sorted(points.items(), key=lambda kv: kv[0][2]):
                if e != endpoint:
                    continue
                value = (point["wrk"]["requests_per_s"] if metric == "rate"
                         else percentile_ms(point, "99"))
                series.setdefault(server, []).append((c, value))
            out.extend(panel(column * panel_w, 50 + row * panel_h, panel_w, panel_h,
                             f"{endpoint}: {label}", label, series))
    legend_y = height - 16
    x = width / 2 - 180
    for server in ORDER:
        out.append(f'<line x1="{x}" y1="{legend_y - 4}" x2="{x + 24}" y2="{legend_y - 4}" '
                   f'stroke="{COLORS[server]}" stroke-width="3"/>')
        out.append(f'<text x="{x + 30}" y="{legend_y}">{LABELS[server]}</text>')
        x += 130
    out.append("</svg>")
    return "\n".join(out) + "\n"


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
