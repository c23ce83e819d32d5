#!/usr/bin/env python3
"""The Markdown table of bench/redis/run_redis_bench.sh: btq::redis_permits against redis-semaphore.

    python3 bench/redis/summarize_redis.py bench/results/redis.json > bench/results/redis.md

The first run of the file is btq, the second redis-semaphore with its defaults (the ratio column
compares those two: peer / btq; for times and costs above 1 means btq is lower, for grants per
second below 1 means btq grants more), a third (if present) redis-semaphore with a
shorter retryInterval.
"""

import json
import sys


def fmt(value, digits=1):
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def ratio(peer, btq):
    if peer is None or btq in (None, 0):
        return "-"
    return f"{peer / btq:.2f}"


def pick(run, path):
    """The value at `path` (keys and list indexes) in `run`, or None."""
    value = run
    for key in path:
        if value is None:
            return None
        if isinstance(key, int):
            value = value[key] if key < len(value) else None
        else:
            value = value.get(key)
    return value


def median(values):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def ms(value):
    return None if value is None else value / 1000.0


def fairness(run, index):
    shares = pick(run, ["contended", index, "grants_per_process"])
    if not shares or max(shares) == 0:
        return None
    return min(shares) / max(shares)


def verdict(value, target, unit, lower_is_better=True):
    if value is None:
        return "-"
    met = value <= target if lower_is_better else value >= target
    sign = "≤" if lower_is_better else "≥"
    if met:
        return f"**met** ({fmt(value, 2)} {unit} {sign} {fmt(target, 2)} {unit})"
    return f"**missed** ({fmt(value, 2)} {unit}, target {sign} {fmt(target, 2)} {unit})"


def main():
    with open(sys.argv[1], encoding="utf-8") as handle:
        data = json.load(handle)
    runs = data["runs"]
    btq, peer = runs[0], runs[1]
    fast = runs[2] if len(runs) > 2 else None
    fast_retry = pick(fast, ["settings", "retry_interval_ms"]) if fast else None

    rows = []

    def row(label, path, scale=None):
        values = []
        for run in (btq, peer, fast):
            value = pick(run, path) if run is not None else None
            values.append(scale(value) if (scale and value is not None) else value)
        rows.append((label, values))
        return values

    for kind, label in (("acquire", "acquire"), ("release", "release"), ("cycle", "acquire + release")):
        for q in ("p50", "p99", "p999"):
            row(f"uncontended {label} {q} (µs)", ["uncontended", f"{kind}_us", q])
    acquire_trips = row("round trips per acquire (uncontended)", ["uncontended", "round_trips_per_acquire"])
    release_trips = row("round trips per release (uncontended)", ["uncontended", "round_trips_per_release"])
    row("server commands per task, uncontended (those inside scripts included)",
        ["uncontended", "server_commands_per_grant"])
    for index, n in ((0, 1), (1, 16)):
        prefix = f"contended N = {n}"
        for q in ("p50", "p99", "p999"):
            row(f"{prefix}: acquire {q} (ms)", ["contended", index, "acquire_us", q], scale=ms)
        row(f"{prefix}: release p50 (ms)", ["contended", index, "release_us", "p50"], scale=ms)
        grants = row(f"{prefix}: grants per second" + (" (saturation)" if n == 16 else ""),
                     ["contended", index, "grants_per_s"])
        row(f"{prefix}: client round trips per grant", ["contended", index, "client_round_trips_per_grant"])
        row(f"{prefix}: server commands per grant", ["contended", index, "server_commands_per_grant"])
        row(f"{prefix}: Redis CPU µs per grant", ["contended", index, "server_cpu_us_per_grant"])
        rows.append((f"{prefix}: fairness (fewest / most grants of a process)",
                     [fairness(run, index) if run else None for run in (btq, peer, fast)]))
    wake = row("wake-up, release → next grant in another process, p50 (µs)", ["wake", "wake_us", "p50"])
    row("wake-up p99 (µs)", ["wake", "wake_us", "p99"])
    row("wake-up max (µs)", ["wake", "wake_us", "max"])
    row("wake-up: client round trips per grant", ["wake", "client_round_trips_per_grant"])
    ttl = pick(btq, ["recovery", "ttl_ms"])
    row(f"recovery after a holder's SIGKILL, median (ms; TTL {ttl} ms)", ["recovery", "median_ms"])
    row("recovery max (ms)", ["recovery", "max_ms"])
    rows.append(("recovery: the lease's time left on the server at the kill, median (ms)",
                 [median(pick(run, ["recovery", "lease_left_at_kill_ms"])) if run else None
                  for run in (btq, peer, fast)]))
    row("recovery: grant after the lease's expiry on the server, median (ms)",
        ["recovery", "after_expiry_median_ms"])

    header = ["measure", f"**{btq['library']}**", f"{peer['library']} (defaults: retryInterval "
              f"{pick(peer, ['settings', 'retry_interval_ms'])} ms)", "peer / btq"]
    if fast:
        header.insert(3, f"{fast['library']} (retryInterval {fast_retry} ms)")
    print(f"btq::redis_permits against {peer['library']}: one run, {data['started']}, "
          f"redis-server {data['redis_version']} on loopback, {data['cores']} cores, load "
          f"average {data['load_average_at_start']} at the start; {btq['settings']['processes']} "
          f"processes × {btq['settings']['waiters_per_process']} waiters in the contended runs, "
          f"{btq['settings']['duration_ms'] / 1000:g} s each.")
    print()
    print("| " + " | ".join(header) + " |")
    print("| --- |" + " ---: |" * (len(header) - 1))
    for label, values in rows:
        digits = 2 if ("round trips" in label or "fairness" in label or "release p50 (ms)" in label) else 1
        cells = [fmt(values[0], digits), fmt(values[1], digits)]
        if fast:
            cells.append(fmt(values[2], digits))
        cells.append("-" if "fairness" in label else ratio(values[1], values[0]))
        print(f"| {label} | " + " | ".join(cells) + " |")

    print()
    print("Targets (issue 13), btq:")
    print()
    print("| target | measured | verdict |")
    print("| --- | --- | --- |")
    print(f"| 1 round trip per acquire (common case: uncontended) | {fmt(acquire_trips[0], 2)} | "
          f"{verdict(acquire_trips[0], 1.0, 'round trips')} |")
    print(f"| 1 round trip per release (common case: uncontended) | {fmt(release_trips[0], 2)} | "
          f"{verdict(release_trips[0], 1.0, 'round trips')} |")
    wake_p99 = ms(pick(btq, ["wake", "wake_us", "p99"]))
    print(f"| wake-up under 1 ms on loopback (p50) | {fmt(ms(wake[0]), 3)} ms | "
          f"{verdict(ms(wake[0]), 1.0, 'ms')} |")
    print(f"| wake-up under 1 ms on loopback (p99) | {fmt(wake_p99, 3)} ms | "
          f"{verdict(wake_p99, 1.0, 'ms')} |")
    recovery_max = pick(btq, ["recovery", "max_ms"])
    print(f"| recovery after SIGKILL within one TTL + margin ({ttl} ms + 1 s) | "
          f"{fmt(recovery_max, 1)} ms (max) | {verdict(recovery_max, ttl + 1000.0, 'ms')} |")


if __name__ == "__main__":
    main()
