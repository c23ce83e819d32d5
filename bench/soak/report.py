"""The soak run's one-page text report and its SVG chart (bench/svg_chart.py)."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import svg_chart  # noqa: E402

SLICES = 6
GROUPS = [("import", ("/api/import-schedule",)), ("playlist", ("/api/schedule-playlist",)),
          ("list", ("/api/schedules", "/api/playlists", "/api/infowars-videos")),
          ("export", ("/api/export-schedule-json", "/api/export-schedule-xml",
                      "/api/export-all-schedules-xml")),
          ("status", ("/api/queue-stats", "/api/system-info", "/metrics", "/healthz", "/readyz"))]
COLORS = {"import": "#1f77b4", "playlist": "#9467bd", "list": "#2ca02c", "export": "#ff7f0e",
          "status": "#7f7f7f", "rss": "#d62728", "fds": "#17becf", "workers": "#8c564b"}


def group_of(path: str) -> str:
    for name, paths in GROUPS:
        if path in paths:
            return name
    return "other"


def percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def slices(summary: dict) -> list[tuple[float, float]]:
    width = summary["seconds"] / SLICES
    return [(i * width, (i + 1) * width) for i in range(SLICES)]


def latency_table(summary: dict, records: list[dict], key=group_of,
                  names: list[str] | None = None) -> dict[str, list[tuple[int, float, float]]]:
    """{group (or what `key` gives): [(requests, p50 ms, p99 ms) per slice]} of the answered
    requests."""
    out = {}
    for name in names or [name for name, _ in GROUPS]:
        row = []
        for low, high in slices(summary):
            values = [r["latency_ms"] for r in records if r["outcome"] == "answered" and
                      key(r["path"]) == name and low <= r["t_send"] < high]
            row.append((len(values), percentile(values, 0.5), percentile(values, 0.99)))
        out[name] = row
    return out


def text(summary: dict, records: list[dict], samples: list[dict]) -> str:
    lines = []
    verdict = "PASSED" if not summary["violations"] else f"FAILED ({len(summary['violations'])} violations)"
    s = summary["settings"]
    lines.append(f"btq soak: {summary['mode']} mode, {summary['seconds']} s, seed {summary['seed']}: {verdict}")
    lines.append(f"server: --pool-size {s['pool_size']} --queue-capacity {s['queue_capacity']} "
                 f"--queue-timeout-ms {s['queue_timeout_ms']} --task-timeout-ms {s['task_timeout_ms']} "
                 f"--header-timeout-ms {s['header_timeout_ms']}, worker delay {s['worker_delay_ms']} ms; "
                 f"{s['steady_clients']} keep-alive clients + bursts, at most {s['max_connections']} connections")
    lines.append("")
    by_outcome: dict[str, int] = {}
    for r in records:
        key = str(r["status"]) if r["outcome"] == "answered" else r["outcome"]
        by_outcome[key] = by_outcome.get(key, 0) + 1
    lines.append(f"requests: {len(records)}  by status: " +
                 "  ".join(f"{k}: {v}" for k, v in sorted(by_outcome.items())))
    sources: dict[str, int] = {}
    for r in records:
        sources[r["source"]] = sources.get(r["source"], 0) + 1
    lines.append("by client: " + "  ".join(f"{k}: {v}" for k, v in sorted(sources.items())))
    faults: dict[str, int] = {}
    for f in summary["faults"]:
        if f["kind"] not in ("recovered",) and not f.get("skipped"):
            faults[f["kind"]] = faults.get(f["kind"], 0) + 1
    lines.append("faults: " + "  ".join(f"{k}: {v}" for k, v in sorted(faults.items())))
    windows = summary["windows"]

    def most(kind: str, key: str) -> float:
        return max((w.get(key, 0) for w in windows if w["kind"] == kind), default=0)
    if any(w["kind"] == "emfile" for w in windows):
        lines.append(f"  emfile: server CPU at most {most('emfile', 'cpu_cores')} cores over each 3 s, "
                     f"at most {most('emfile', 'accept_failures')} failed accepts logged")
    if any(w["kind"] == "disk_full" for w in windows):
        lines.append(f"  disk_full: ballast up to {most('disk_full', 'ballast_bytes') / 2**20:.0f} MiB")
    if any(w["kind"] == "read_only" for w in windows):
        lines.append(f"  read_only: at most {most('read_only', 'remount_attempts')} remount tries")
    stops = [w for w in windows if w["kind"] == "sigstop_worker"]
    if stops:
        gone = sum(1 for w in stops if w.get("state_at_sigcont") in ("gone", "Z"))
        lines.append(f"  sigstop_worker: {gone} of {len(stops)} stopped workers ended by the server "
                     "before SIGCONT")
    recovered = [f for f in summary["faults"] if f["kind"] == "recovered"]
    if recovered:
        lines.append(f"  recovered after {len(recovered)} faults (first import 200): at most "
                     f"{max(f['seconds'] for f in recovered)} s")
    for e in summary["exits"]:
        lines.append(f"  {e['reason']}: exit {e['exit_code']} after {e['seconds']} s, "
                     f"{e['descendants_seen']} workers seen, {len(e['left'])} left")
    lines.append("")
    bounds = slices(summary)
    lines.append("latency ms, p50/p99 (answers) by endpoint and time slice (client-side: it includes "
                 "the client's own delays under bursts):")
    lines.append(f"{'endpoint':<30}" + "".join(f"{f'{lo:.0f}-{hi:.0f} s':>17}" for lo, hi in bounds))
    paths = [path for _, group in GROUPS for path in group]
    for name, row in latency_table(summary, records, key=lambda path: path, names=paths).items():
        lines.append(f"{name:<30}" + "".join(
            f"{f'{p50:.0f}/{p99:.0f} ({n})' if n else '-':>17}" for n, p50, p99 in row))
    lines.append("")
    lines.append("server over time (max in slice): resident MiB / descriptors / workers")
    cells = []
    for lo, hi in bounds:
        inside = [x for x in samples if lo <= x["t"] < hi]
        if inside:
            cells.append(f"{max(x['rss_kib'] for x in inside) / 1024:.1f}/"
                         f"{max(x['fds'] for x in inside)}/{max(x['workers'] for x in inside)}")
        else:
            cells.append("-")
    lines.append(f"{'':<30}" + "".join(f"{c:>17}" for c in cells))
    quiet = summary["quiet"]
    lines.append("quiet points (load paused, connections closed, queue idle): " + "  ".join(
        f"{k} {v['t']:.0f} s: {v['rss_kib'] / 1024:.1f} MiB, {v['fds']} fds" for k, v in quiet.items()))
    lines.append("")
    checks = summary["checks"]
    imports = checks.get("imports", {})
    lines.append(f"oracle: imports stored {imports.get('stored')} (all listed and exported as sent), "
                 f"refused {imports.get('absent')} (all absent), indeterminate "
                 f"{imports.get('indeterminate_present', 0)} present / "
                 f"{imports.get('indeterminate_absent', 0)} absent; listed {checks.get('listed')}; "
                 f"integrity_check {checks.get('integrity_check')}; "
                 f"no-answer in the shutdown window {checks.get('unanswered_in_shutdown')}")
    for q in checks.get("queue_stats", []):
        lines.append(f"  queue-stats epoch {q['epoch']}: server {q.get('server')} client "
                     f"{q.get('client_all')} unknown {q.get('unknown')} cancelled {q.get('cancelled')}")
    if "rss_kib" in checks:
        lines.append(f"  resident KiB {checks['rss_kib']}  descriptors {checks['fds']}")
    for note in summary["notes"]:
        lines.append(f"note: {note}")
    for v in summary["violations"]:
        lines.append(f"VIOLATION: {v}")
    return "\n".join(lines) + "\n"


def svg(summary: dict, records: list[dict], samples: list[dict]) -> str:
    width, height = 1000, 420
    out = svg_chart.header(width, height, f"Soak: {summary['mode']} mode, {summary['seconds']} s, "
                           f"seed {summary['seed']}",
                           "p99 latency by endpoint group per time slice; server memory and "
                           "descriptors over the run (the restart splits it)")
    table = latency_table(summary, records)
    series = {name: [(int(lo), p99) for (lo, _), (n, _, p99) in zip(slices(summary), row) if n]
              for name, row in table.items()}
    order = [name for name, _ in GROUPS]
    labels = {name: name for name in order}
    out += svg_chart.panel(0, 50, width / 2, height - 90, "p99 latency (ms)", "ms", series,
                           x_label="slice start (s)", order=order, labels=labels, colors=COLORS,
                           x_unit="s")
    step = max(1, len(samples) // 12)
    picked = samples[::step]
    memory = {"rss": [(int(x["t"]), x["rss_kib"] / 1024) for x in picked],
              "fds": [(int(x["t"]), x["fds"]) for x in picked]}
    mem_labels = {"rss": "resident MiB", "fds": "descriptors"}
    out += svg_chart.panel(width / 2, 50, width / 2, height - 90, "server resident MiB and "
                           "descriptors", "value", memory, x_label="time (s)",
                           order=["rss", "fds"], labels=mem_labels, colors=COLORS, x_unit="s")
    out += svg_chart.legend(order + ["rss", "fds"], {**labels, **mem_labels}, COLORS, 40,
                            height - 14, 125)
    return svg_chart.footer(out)


def markdown(summary: dict, records: list[dict], samples: list[dict]) -> str:
    """The run as README tables: answers, faults, latency by endpoint group, the server's size."""
    out = [f"`bash bench/soak/run.sh --seconds {summary['seconds']} --seed {summary['seed']} "
           f"--mode {summary['mode']}`: "
           + ("passed" if not summary["violations"] else f"{len(summary['violations'])} violations"), ""]
    counts: dict[str, int] = {}
    for r in records:
        key = str(r["status"]) if r["outcome"] == "answered" else r["outcome"].replace("_", " ")
        counts[key] = counts.get(key, 0) + 1
    out.append("| requests | " + " | ".join(sorted(counts)) + " |")
    out.append("| --- |" + " --- |" * len(counts))
    out.append(f"| {len(records):,} | " + " | ".join(f"{counts[k]:,}" for k in sorted(counts)) + " |")
    out.append("")
    faults: dict[str, int] = {}
    for f in summary["faults"]:
        if f["kind"] != "recovered" and not f.get("skipped"):
            faults[f["kind"]] = faults.get(f["kind"], 0) + 1
    out.append("| " + " | ".join(sorted(faults)) + " |")
    out.append("|" + " --- |" * len(faults))
    out.append("| " + " | ".join(str(faults[k]) for k in sorted(faults)) + " |")
    out.append("")
    bounds = slices(summary)
    out.append("| p50 / p99 ms | " + " | ".join(f"{lo:.0f}–{hi:.0f} s" for lo, hi in bounds) + " |")
    out.append("| --- |" + " ---: |" * len(bounds))
    for name, row in latency_table(summary, records).items():
        out.append(f"| {name} | " + " | ".join(f"{p50:.0f} / {p99:.0f}" if n else "–"
                                               for n, p50, p99 in row) + " |")
    cells = []
    for lo, hi in bounds:
        inside = [x for x in samples if lo <= x["t"] < hi]
        cells.append(f"{max(x['rss_kib'] for x in inside) / 1024:.1f} MiB, "
                     f"{max(x['fds'] for x in inside)}" if inside else "–")
    out.append("| server resident, descriptors (max) | " + " | ".join(cells) + " |")
    checks = summary["checks"]
    imports = checks.get("imports", {})
    quiet = summary["quiet"]
    out.append("")
    out.append(f"Imports answered 200: {imports.get('stored', 0):,}, each listed and exported as sent; "
               f"refused: {imports.get('absent', 0):,}, none stored; indeterminate: "
               f"{imports.get('indeterminate_present', 0)} stored, "
               f"{imports.get('indeterminate_absent', 0)} not. `integrity_check`: "
               f"{', '.join(checks.get('integrity_check', []))}. Quiet points: " +
               "; ".join(f"{k.replace('_', ' ')} {v['rss_kib'] / 1024:.1f} MiB, {v['fds']} descriptors"
                         for k, v in quiet.items()) + ".")
    return "\n".join(out) + "\n"
