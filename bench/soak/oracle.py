"""The soak run's oracle: what must hold of the client's record, the server's answers and the data
folder at the end (README, "Soak and chaos"). check() returns {violations, checks, notes}."""

import xml.etree.ElementTree as ElementTree

# Every status the README documents for these requests (no token, no Expect, no memory limit).
DOCUMENTED = {200, 400, 404, 405, 408, 413, 415, 500, 502, 503, 504}
# How long after a fault ends its effects may still show (a request queued during it).
AFTERMATH = 1.5
# The statuses a request of each kind may get besides the ones its fault windows allow.
EXPECTED = {
    "import_json:valid": {200}, "import_xml:valid": {200}, "recovery:import_json": {200, 500},
    "hangup:after_import": set(), "schedule_playlist": {200},
    "schedule_playlist_unknown": {404}, "import_bad_utf8": {400}, "wrong_method": {405},
    "unknown_path": {404}, "wrong_type": {415}, "export_json:known": {200},
    "export_xml:known": {200}, "export_json:unknown": {404}, "export_xml:unknown": {404},
    "schedules": {200}, "playlists": {200}, "export_all": {200}, "infowars": {200},
    "system_info": {200}, "queue_stats": {200}, "metrics": {200}, "healthz": {200},
    "readyz": {200}, "slow:in_time": {200, 408}, "slow:too_slow": {408},
}
# Statuses the queue gives any queued request: full, expired, cleared (503), timed out (504).
QUEUE_STATUSES = {503, 504}


def expected_statuses(record: dict) -> set[int]:
    kind = record["kind"]
    if kind.startswith(("import_json_invalid", "import_xml_invalid")):
        base = {400}
    elif kind.startswith(("burst:", "harness:")):
        base = {200}
    else:
        base = EXPECTED.get(kind, {200})
    if record["queued"]:
        base = base | QUEUE_STATUSES
    return base


def overlaps(record: dict, windows: list[dict], kinds: tuple[str, ...]) -> bool:
    for window in windows:
        if window["kind"] in kinds and window["end"] is not None:
            if record["t_send"] <= window["end"] + AFTERMATH and record["t_end"] >= window["start"]:
                return True
    return False


def in_shutdown(record: dict, shutdown: list[float]) -> bool:
    """Whether the request was in flight at the SIGTERM or sent before the restart was ready."""
    return len(shutdown) == 2 and record["t_send"] <= shutdown[1] and record["t_end"] >= shutdown[0]


def check(harness, listing: dict, everything: str, exports: dict, integrity: dict) -> dict:
    violations: list[str] = []
    notes: list[str] = []
    checks: dict = {}
    records = harness.rec.records
    windows = harness.windows
    shutdown = harness.shutdown_window

    def violation(kind: str, record: dict | None, text: str) -> None:
        bucket = checks.setdefault("violations_by_kind", {})
        bucket[kind] = bucket.get(kind, 0) + 1
        if bucket[kind] <= 5:
            where = "" if record is None else (
                f" [#{record['id']} {record['kind']} {record['path']} sent {record['t_send']:.2f}s "
                f"status {record['status']} {record['outcome']} {record['message'][:120]!r}]")
            violations.append(f"{kind}: {text}{where}")

    # 1. Every request got exactly one answer, of a documented status and the one it should get.
    unanswered_allowed = 0
    outside = {"504": 0}
    for record in records:
        if record["outcome"] is None:
            violation("never_finished", record, "the client never finished this request")
            continue
        if record["outcome"] == "self_disconnect":
            continue
        down = in_shutdown(record, shutdown)
        if record["outcome"] != "answered":
            if down:
                unanswered_allowed += 1
                continue
            violation("no_answer", record, f"no answer ({record['outcome']}) outside the shutdown")
            continue
        status = record["status"]
        if status not in DOCUMENTED:
            violation("undocumented_status", record, f"status {status}")
            continue
        allowed = expected_statuses(record)
        if overlaps(record, windows, ("disk_full", "read_only")):
            allowed = allowed | {500}
        if overlaps(record, windows, ("sigkill_worker", "sigstop_worker", "read_only", "emfile")):
            allowed = allowed | {502}
        if down:
            allowed = allowed | {503, 502} | ({503} if record["kind"] == "readyz" else set())
        if status not in allowed:
            violation("unexpected_status", record, f"status {status}, expected one of {sorted(allowed)}")
        if status == 503 and record.get("path") != "/readyz" and not record.get("retry_after"):
            violation("no_retry_after", record, "a 503 without Retry-After")
        if status == 504 and not overlaps(record, windows, ("sigstop_worker",)):
            outside["504"] += 1
    if harness.rec.extra_bytes:
        violation("extra_bytes", None, f"{len(harness.rec.extra_bytes)} responses came with bytes "
                  f"after them: {harness.rec.extra_bytes[:3]}")
    checks["unanswered_in_shutdown"] = unanswered_allowed
    checks["timeouts_outside_sigstop"] = outside["504"]
    if outside["504"]:
        notes.append(f"{outside['504']} requests got 504 outside a SIGSTOP window (a slow run on a "
                     "busy machine: documented, not a violation)")

    # 2. Imports: each answered 200 listed once with exactly its content; each refused absent;
    # the indeterminate ones (502, 504, hung up, no answer) present at most once, exactly.
    schedules = listing.get("schedules") if isinstance(listing, dict) else None
    if not isinstance(schedules, list):
        violation("listing", None, "GET /api/schedules failed at the end")
        schedules = []
    by_name: dict[str, list[dict]] = {}
    for entry in schedules:
        by_name.setdefault(entry["name"], []).append(entry)
    exported = programmes_by_channel(everything)
    if everything == "":
        violation("export_all", None, "GET /api/export-all-schedules-xml failed at the end")
    counted = {"stored": 0, "absent": 0, "indeterminate_present": 0, "indeterminate_absent": 0}
    sent_names = set()
    for record in records:
        content = record.get("import")
        if not content:
            continue
        sent_names.add(content["name"])
        found = by_name.get(content["name"], [])
        status, outcome = record["status"], record["outcome"]
        refused = outcome == "refused" or (outcome == "answered" and status in (400, 404, 415, 500)) or (
            status == 503 and "after the shutdown grace" not in record["message"])
        stored = outcome == "answered" and status == 200
        if len(found) > 1:
            violation("import_duplicated", record, f"listed {len(found)} times")
        if stored:
            counted["stored"] += 1
            if len(found) != 1:
                violation("import_lost", record, "answered 200 but not listed")
                continue
            if found[0]["id"] != record.get("answer_id"):
                violation("import_id", record, f"listed with id {found[0]['id']}, answered {record.get('answer_id')}")
        elif refused:
            counted["absent"] += 1
            if found:
                violation("refused_import_stored", record, "answered with an error but listed")
            continue
        else:
            counted["indeterminate_present" if found else "indeterminate_absent"] += 1
            if not found:
                continue
        entry = found[0]
        if entry["channel"] != content["channel"]:
            violation("import_content", record, f"channel {entry['channel']}")
        if content["items"] is None:  # a playlist: its content is the worker's, not the client's
            continue
        if exported.get(content["channel"]) != content["items"]:
            violation("import_content", record, f"all-schedules export has "
                      f"{exported.get(content['channel'])}, sent {content['items']}")
        exported_one = exports.get(entry["id"])
        if exported_one is not None:
            items = exported_one.get("schedule", {}).get("items")
            got = None if items is None else sorted(
                [[i["title"], i.get("url", ""), i["start"], i["duration"]] for i in items],
                key=lambda row: (row[2], row[0]))
            if got != content["items"]:
                violation("import_content", record, f"export-schedule-json has {got}")
    strangers = [entry["name"] for entry in schedules if entry["name"] not in sent_names]
    if strangers:
        violation("unknown_schedules", None, f"{len(strangers)} listed schedules nobody sent: {strangers[:5]}")
    checks["imports"] = counted
    checks["listed"] = len(schedules)
    checks["sampled_exports"] = len(exports)

    # 3. The database after the server stopped.
    checks["integrity_check"] = integrity["result"]
    if not integrity["ok"]:
        violation("integrity", None, f"PRAGMA integrity_check: {integrity['result']}")
    db_names = sorted(integrity["names"].values())
    if db_names != sorted(entry["name"] for entry in schedules):
        violation("database_vs_listing", None, f"{len(db_names)} rows in schedules.db, "
                  f"{len(schedules)} listed")

    # 4. No leak: resident size and descriptors at the end against after warm-up (same process,
    # both taken with the load paused, every client connection closed and the queue idle).
    warm, end = harness.quiet.get("warm_up_2"), harness.quiet.get("after_run")
    if warm and end:
        rss_limit = warm["rss_kib"] * 1.5 + 24 * 1024
        checks["rss_kib"] = {"warm_up": warm["rss_kib"], "after_run": end["rss_kib"],
                             "limit": int(rss_limit)}
        checks["fds"] = {"warm_up": warm["fds"], "after_run": end["fds"], "limit": warm["fds"] + 4}
        if end["rss_kib"] > rss_limit:
            violation("rss_growth", None, f"resident {end['rss_kib']} KiB after the run, "
                      f"{warm['rss_kib']} KiB after warm-up (limit 1.5x + 24 MiB)")
        if end["fds"] > warm["fds"] + 4:
            violation("fd_growth", None, f"{end['fds']} descriptors after the run, {warm['fds']} "
                      "after warm-up (limit +4)")

    # 5. /api/queue-stats against the client's record, per server process (counters start at 0
    # with each process): the last epoch exactly up to the requests whose fate the client cannot
    # know, the first one between bounds (its snapshot was taken under load just before SIGTERM).
    checks["queue_stats"] = []
    for snapshot in harness.stats_snapshots:
        result = compare_counters(snapshot, records, shutdown)
        checks["queue_stats"].append(result)
        for text in result["violations"]:
            violation("queue_stats", None, f"epoch {snapshot['epoch']}: {text}")
    return {"violations": violations, "checks": checks, "notes": notes}


def classify(record: dict) -> str | None:
    """What the queue counted for a queued request, from its answer: succeeded (the worker
    answered), failed (502), timed_out (504), rejected, expired, cleared, not_submitted, or
    unknown (no answer, hung up, a 502 of a worker that could not start)."""
    if record["outcome"] != "answered":
        return "unknown"
    status, message = record["status"], record["message"]
    if status == 503:
        if "queue is full" in message:
            return "rejected"
        if "expired" in message:
            return "expired"
        if "queue cleared" in message:
            return "cleared"
        if message.startswith("Server shutting down") and "grace" not in message:
            return "not_submitted"
        return "unknown"
    if status == 504:
        return "timed_out"
    if status == 408:
        return "not_submitted"
    if status == 502:
        return "unknown" if "cannot start" in message else "failed"
    if status in (200, 400, 404, 500):
        return "succeeded"
    return "unknown"


def compare_counters(snapshot: dict, records: list[dict], shutdown: list[float]) -> dict:
    stats = snapshot.get("stats") or {}
    result = {"epoch": snapshot["epoch"], "violations": []}
    try:
        pool, queue = stats["processPool"], stats["queue"]
    except (KeyError, TypeError):
        result["violations"].append("no /api/queue-stats snapshot")
        return result
    epoch = snapshot["epoch"]
    t_term, t_ready = (shutdown + [0.0, 0.0])[:2]
    sure: dict[str, int] = {}  # answered before the snapshot was sent: surely counted
    late: dict[str, int] = {}  # every answer of this process, the snapshot's or later
    unknown = 0
    for record in records:
        if not record["queued"] or record["outcome"] == "refused":
            continue
        if record["status"] in (405, 415) or record["kind"] == "import_bad_utf8":
            continue  # refused by the router: never submitted
        if record["outcome"] == "self_disconnect" and record["kind"] == "hangup:partial_header":
            continue
        if record["t_send"] > snapshot["received"]:
            continue  # sent after the snapshot was taken: not in it
        mine = record["t_send"] < t_term if epoch == 1 else record["t_send"] > t_ready
        crossing = record["t_send"] <= t_ready and record["t_end"] >= t_term
        if not mine and not crossing:
            continue
        kind = classify(record) if not crossing else "unknown"
        if kind == "not_submitted":
            continue
        if kind == "unknown":
            unknown += 1
            continue
        late[kind] = late.get(kind, 0) + 1
        if record["t_end"] < snapshot["sent"]:
            sure[kind] = sure.get(kind, 0) + 1
    server = {"succeeded": pool["totalProcessed"] - pool["totalErrors"],
              "failed": pool["totalErrors"] - queue["timedOut"], "timed_out": queue["timedOut"],
              "rejected": queue["rejected"], "expired": queue["expired"],
              "cleared": queue["cleared"]}
    quiescent = snapshot.get("quiescent", False)
    result.update(server=server, client_sure=sure, client_all=late, unknown=unknown,
                  cancelled=queue["cancelled"], submitted=queue["submitted"])
    # A task's answer is delivered while it still holds its slot (its callback runs first, the
    # count follows as the slot is freed), so an answer the client already has may be counted
    # only among the snapshot's running tasks: they lower what the snapshot surely counts.
    in_flight = 0 if quiescent else pool["activeProcesses"]
    for key, value in server.items():
        low = (late if quiescent else sure).get(key, 0)
        if key in ("succeeded", "failed", "timed_out"):
            low = max(0, low - in_flight)
        high = late.get(key, 0) + unknown
        if not low <= value <= high:
            result["violations"].append(f"{key} {value}: the client's record says {low} to {high}")
    if queue["cancelled"] > unknown:
        result["violations"].append(f"cancelled {queue['cancelled']} > the {unknown} requests "
                                    "whose client hung up or got no answer")
    identity = (pool["totalProcessed"] + pool["activeProcesses"] + pool["queuedTasks"] +
                queue["rejected"] + queue["cleared"] + queue["expired"] + queue["cancelled"])
    if queue["submitted"] != identity:
        result["violations"].append(f"submitted {queue['submitted']} != processed + active + "
                                    f"queued + rejected + cleared + expired + cancelled ({identity})")
    return result


def programmes_by_channel(xml_text: str) -> dict[str, list[list]]:
    """{channel: [[title, url, start ISO, duration]]} from an XMLTV export, sorted by start."""
    if not xml_text:
        return {}
    try:
        root = ElementTree.fromstring(xml_text.encode("utf-8"))
    except ElementTree.ParseError:
        return {}
    out: dict[str, list[list]] = {}
    for programme in root.iter("programme"):
        start, stop = programme.get("start"), programme.get("stop")
        url = programme.findtext("url") or ""
        row = [programme.findtext("title"), url, iso_of(start), seconds_between(start, stop)]
        out.setdefault(programme.get("channel"), []).append(row)
    for rows in out.values():
        rows.sort(key=lambda row: (row[2], row[0]))
    return out


def iso_of(xmltv: str) -> str:
    """'20260101080000 +0100' -> '2026-01-01T08:00:00+01:00'."""
    t, offset = xmltv.split(" ")
    return (f"{t[0:4]}-{t[4:6]}-{t[6:8]}T{t[8:10]}:{t[10:12]}:{t[12:14]}"
            f"{offset[0]}{offset[1:3]}:{offset[3:5]}")


def seconds_between(start: str, stop: str) -> int:
    import calendar

    def epoch(text: str) -> int:
        t, offset = text.split(" ")
        base = calendar.timegm((int(t[0:4]), int(t[4:6]), int(t[6:8]), int(t[8:10]),
                                int(t[10:12]), int(t[12:14])))
        minutes = int(offset[1:3]) * 60 + int(offset[3:5])
        return base - (minutes if offset[0] == "+" else -minutes) * 60
    return epoch(stop) - epoch(start)
