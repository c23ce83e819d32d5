#!/usr/bin/env python3
"""Checks docs/ops/grafana-dashboard.json and docs/ops/alerts.yml against a live schedule_server.

    python3 scripts/check-grafana-dashboard.py --server build/plain/examples/schedule_server/schedule_server \\
        --worker build/plain/examples/schedule_worker/schedule_worker

1. The dashboard is well-formed JSON and structurally sane: a title, a uid, the DS_PROMETHEUS
   input every panel and query uses as its datasource, unique panel ids, a place on the 24-column
   grid that overlaps no other panel, at least one query on every panel that is not a row, refIds
   unique within a panel, and only template variables the dashboard defines (or Grafana's own).
2. Every metric name in every PromQL expression, the dashboard's and alerts.yml's, is collected.
3. A schedule_server is started (pool mode, on a free loopback port, with a temporary data folder
   and the repository's sample data), its /metrics is read, and the server is stopped.
4. Every name collected must be exported by that server (histograms as the _bucket, _sum and
   _count series it writes), and rate(), irate() and increase() must be applied to counters only.

Python 3 standard library only. Exits 0 when all is well, 1 listing every problem otherwise.
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
DASHBOARD = os.path.join(REPO, "docs", "ops", "grafana-dashboard.json")
ALERTS = os.path.join(REPO, "docs", "ops", "alerts.yml")
SAMPLE_DATA = os.path.join(REPO, "examples", "schedule_server", "sample-data")

DATASOURCE_UID = "${DS_PROMETHEUS}"
# Variables Grafana defines itself.
GRAFANA_VARIABLES = {"__interval", "__interval_ms", "__rate_interval", "__range", "__range_s",
                     "__range_ms", "__dashboard", "__from", "__to", "__name", "__org", "__user"}

# PromQL words that look like metric names but are not: keywords, set operators, modifiers and the
# literals inf and nan. Functions and aggregations are told by the "(" that follows them.
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
                "or", "unless", "offset", "inf", "nan", "start", "end"}
COUNTER_FUNCTIONS = ("rate", "irate", "increase")


def promql_metric_names(expr):
    """The metric names an expression selects (a small PromQL scanner, enough for these files)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)  # strings
    names = set()
    # {__name__="x"} selects x too; then the label matchers go.
    for match in re.finditer(r'__name__\s*=\s*"([^"]*)"', expr):
        names.add(match.group(1))
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery durations
    # Label lists of by/without/on/ignoring/group_left/group_right.
    # Label lists of by/without/on/ignoring/group_left/group_right go with their keyword, so that
    # `sum by (le) (x)` reads as the function call `sum (x)`.
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\{[^}]*\}|\$\w+", " ", text)  # Grafana variables
    for match in re.finditer(r"(?<![\w.$])([A-Za-z_:][A-Za-z0-9_:]*)", text):
        word = match.group(1)
        rest = text[match.end():].lstrip()
        if rest.startswith("("):
            continue  # a function or an aggregation
        if word.lower() in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def counter_function_arguments(expr):
    """(function, metric) for every rate(metric...), irate(metric...) and increase(metric...)."""
    pattern = r"\b(%s)\s*\(\s*([A-Za-z_:][A-Za-z0-9_:]*)" % "|".join(COUNTER_FUNCTIONS)
    return re.findall(pattern, expr)


def grafana_variables(expr):
    """The names of the Grafana variables an expression uses: $name, ${name}, ${name:format}."""
    return {a or b for a, b in re.findall(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", expr)}


def alert_expressions(path):
    """(rule name, expression) of every rule of a Prometheus rules file, `expr:` as a plain or a
    block scalar (the standard library has no YAML parser; the rules file keeps to these forms)."""
    expressions = []
    lines = open(path, encoding="utf-8").read().splitlines()
    rule = "?"
    i = 0
    while i < len(lines):
        named = re.match(r"^\s*-?\s*(?:alert|record):\s*(\S+)", lines[i])
        if named:
            rule = named.group(1)
        match = re.match(r"^(\s*)(?:-\s+)?expr:\s*(.*)$", lines[i])
        i += 1
        if not match:
            continue
        indent, value = len(match.group(1)), match.group(2).strip()
        if re.fullmatch(r"[|>][-+]?", value):
            block = []
            while i < len(lines) and (not lines[i].strip() or
                                      len(lines[i]) - len(lines[i].lstrip()) > indent):
                block.append(lines[i].strip())
                i += 1
            value = " ".join(block)
        elif value[:1] in "'\"" and value[-1:] == value[:1]:
            value = value[1:-1]
        expressions.append((rule, value))
    return expressions


def walk_panels(panels):
    for panel in panels:
        yield panel
        yield from walk_panels(panel.get("panels", []))


def check_dashboard(dashboard, problems):
    """Structural checks; returns the dashboard's PromQL expressions as (where, expr)."""
    for key in ("title", "uid", "panels", "schemaVersion", "templating"):
        if key not in dashboard:
            problems.append(f"dashboard: no '{key}'")
    if not isinstance(dashboard.get("schemaVersion"), int):
        problems.append("dashboard: schemaVersion is not a number")
    inputs = [i for i in dashboard.get("__inputs", []) if i.get("name") == "DS_PROMETHEUS"]
    if not inputs or inputs[0].get("type") != "datasource" or inputs[0].get("pluginId") != "prometheus":
        problems.append("dashboard: no __inputs entry DS_PROMETHEUS (a prometheus datasource)")

    defined = {v.get("name") for v in dashboard.get("templating", {}).get("list", [])}
    expressions = []
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            if variable.get("datasource", {}).get("uid") != DATASOURCE_UID:
                problems.append(f"variable {variable.get('name')}: datasource is not {DATASOURCE_UID}")
            query = variable.get("query")
            query = query.get("query", "") if isinstance(query, dict) else (query or "")
            inner = re.fullmatch(r"\s*label_values\((.*),\s*\w+\)\s*", query)
            expressions.append((f"variable {variable.get('name')}", inner.group(1) if inner else query))

    seen_ids = {}
    cells = {}
    for panel in walk_panels(dashboard.get("panels", [])):
        where = f"panel {panel.get('id')} '{panel.get('title', '')}'"
        if not isinstance(panel.get("id"), int):
            problems.append(f"{where}: id is not a number")
        elif panel["id"] in seen_ids:
            problems.append(f"{where}: id also used by '{seen_ids[panel['id']]}'")
        else:
            seen_ids[panel["id"]] = panel.get("title", "")
        if not panel.get("title"):
            problems.append(f"{where}: no title")
        if not panel.get("type"):
            problems.append(f"{where}: no type")
        grid = panel.get("gridPos", {})
        if not all(isinstance(grid.get(k), int) for k in ("h", "w", "x", "y")):
            problems.append(f"{where}: gridPos needs whole h, w, x, y")
        elif grid["x"] < 0 or grid["y"] < 0 or grid["w"] < 1 or grid["h"] < 1 or grid["x"] + grid["w"] > 24:
            problems.append(f"{where}: gridPos {grid} is off the 24-column grid")
        else:
            for x in range(grid["x"], grid["x"] + grid["w"]):
                for y in range(grid["y"], grid["y"] + grid["h"]):
                    if (x, y) in cells:
                        problems.append(f"{where}: overlaps {cells[(x, y)]} at x={x}, y={y}")
                        break
                    cells[(x, y)] = where
                else:
                    continue
                break
        if panel.get("type") == "row":
            continue
        if panel.get("datasource", {}).get("uid") != DATASOURCE_UID:
            problems.append(f"{where}: datasource is not {DATASOURCE_UID}")
        targets = panel.get("targets") or []
        if not targets:
            problems.append(f"{where}: no targets")
        ref_ids = set()
        for target in targets:
            expr = target.get("expr", "")
            if not expr.strip():
                problems.append(f"{where}: a target without an expr")
            if target.get("refId") in ref_ids or not target.get("refId"):
                problems.append(f"{where}: refId '{target.get('refId')}' missing or repeated")
            ref_ids.add(target.get("refId"))
            if target.get("datasource", {}).get("uid", DATASOURCE_UID) != DATASOURCE_UID:
                problems.append(f"{where}: target {target.get('refId')} datasource is not {DATASOURCE_UID}")
            for name in grafana_variables(expr) - defined - GRAFANA_VARIABLES:
                problems.append(f"{where}: variable ${name} is not defined by the dashboard")
            expressions.append((where, expr))
    return expressions


def start_server(server, worker, data_dir, timeout):
    """Starts schedule_server on a free loopback port; returns (process, port)."""
    command = [server, "--address", "127.0.0.1", "--port", "0", "--mode", "pool",
               "--pool-size", "2", "--threads", "1", "--data-dir", data_dir,
               "--sample-data", SAMPLE_DATA, "--worker", worker, "--no-access-log"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + timeout
    log = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        log.append(line)
        match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        if match:
            return process, int(match.group(1))
    process.kill()
    process.wait()
    raise RuntimeError("schedule_server did not start:\n" + "".join(log))


def stop_server(process):
    process.send_signal(signal.SIGTERM)
    try:
        process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise RuntimeError("schedule_server did not stop within 20 s of SIGTERM")
    return process.returncode


def exported_metrics(text):
    """{series name: its kind} of a Prometheus text exposition: the family's TYPE (counter,
    gauge, ...), or for a histogram's or summary's series e.g. histogram_bucket."""
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))
    series = {}
    for name in re.findall(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{[^}]*\})? \S+", text, re.MULTILINE):
        kind = types.get(name, "untyped")
        for suffix in ("_bucket", "_sum", "_count"):
            family = name[: -len(suffix)]
            if name.endswith(suffix) and types.get(family) in ("histogram", "summary"):
                kind = types[family] + suffix
        series[name] = kind
    return series


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", required=True, help="the schedule_server program")
    parser.add_argument("--worker", required=True, help="the schedule_worker program")
    parser.add_argument("--dashboard", default=DASHBOARD)
    parser.add_argument("--alerts", default=ALERTS)
    parser.add_argument("--timeout", type=float, default=30, help="seconds the server may take to start")
    arguments = parser.parse_args()

    problems = []
    try:
        with open(arguments.dashboard, encoding="utf-8") as file:
            dashboard = json.load(file)
    except (OSError, json.JSONDecodeError) as error:
        print(f"check-grafana-dashboard: {arguments.dashboard}: {error}", file=sys.stderr)
        return 1
    expressions = check_dashboard(dashboard, problems)
    alert_exprs = alert_expressions(arguments.alerts)
    if not alert_exprs:
        problems.append(f"{arguments.alerts}: no expr found")
    expressions += [(f"{os.path.basename(arguments.alerts)} {rule}", expr) for rule, expr in alert_exprs]

    used = {}
    for where, expr in expressions:
        names = promql_metric_names(expr)
        if not names:
            problems.append(f"{where}: no metric name in '{expr}'")
        for name in names:
            used.setdefault(name, []).append(where)

    with tempfile.TemporaryDirectory(prefix="btq-dashboard-check-") as data_dir:
        process, port = start_server(arguments.server, arguments.worker, data_dir, arguments.timeout)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
                text = response.read().decode("utf-8")
        finally:
            status = stop_server(process)
        if status != 0:
            problems.append(f"schedule_server exited with status {status} after SIGTERM")
    exported = exported_metrics(text)

    for name in sorted(used):
        if name not in exported:
            places = ", ".join(sorted(set(used[name])))
            problems.append(f"metric {name} is not exported by schedule_server's /metrics (used by {places})")
    for where, expr in expressions:
        for function, name in counter_function_arguments(expr):
            kind = exported.get(name)
            if kind is not None and kind not in ("counter", "histogram_bucket", "histogram_sum",
                                                 "histogram_count", "summary_sum", "summary_count"):
                problems.append(f"{where}: {function}() of {name}, a {kind}, not a counter")

    print(f"check-grafana-dashboard: {len(expressions)} expressions "
          f"({len(alert_exprs)} in {os.path.basename(arguments.alerts)}), "
          f"{len(used)} metric names, {len(exported)} series names exported")
    if problems:
        for problem in problems:
            print(f"check-grafana-dashboard: {problem}", file=sys.stderr)
        return 1
    print("check-grafana-dashboard: OK, every metric used is exported")
    return 0


if __name__ == "__main__":
    sys.exit(main())
