"""The soak harness's client side: raw HTTP/1.1 over asyncio streams, the seeded request mix and
the record of every request. Standard library only.

Every request the harness sends, its own checks included, goes through Recorder.send() or one of
the special clients below and leaves one record (a dict) with: `id`, `kind` (what was sent: the
operation and whether it is valid), `path`, `t_send` and `t_end` (seconds on the harness's
monotonic clock), `outcome` (`answered`, `reset` — the connection closed or was reset without a
whole answer —, `refused` — connect() refused —, `timeout` — no answer within the client's limit —
or `self_disconnect` — the client hung up on purpose), `status`, `latency_ms`, `message` (an error
answer's `message`), `queued` (whether the request reaches the queue when the router passes it),
`source` (`steady`, `burst`, `slow`, `disconnect`, `emfile`, `harness`) and, for imports, `import`:
the exact content sent (name, channel, items as the server must store them).
"""

import asyncio
import json
import random
import time

# --- HTTP ---------------------------------------------------------------------------------------


class NoAnswer(Exception):
    """The connection ended (EOF, reset) before a whole response arrived."""


def build_request(method: str, target: str, body: bytes = b"", content_type: str = "",
                  close: bool = False, port: int = 0) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    if content_type:
        lines.append(f"Content-Type: {content_type}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One response (status, lower-case headers, body). Raises NoAnswer on EOF or reset."""
    try:
        status_line = await reader.readline()
        if not status_line.endswith(b"\n"):
            raise NoAnswer("eof before the status line")
        parts = status_line.split(b" ", 2)
        status = int(parts[1])
        headers: dict[str, str] = {}
        while True:
            line = await reader.readline()
            if not line.endswith(b"\n"):
                raise NoAnswer("eof in the header")
            line = line.rstrip(b"\r\n")
            if not line:
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        body = await reader.readexactly(length) if length else b""
        return status, headers, body
    except (ConnectionError, asyncio.IncompleteReadError) as failure:
        raise NoAnswer(str(failure) or type(failure).__name__) from failure


def error_message(body: bytes) -> str:
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return ""
    return str(value.get("message", "")) if isinstance(value, dict) else ""


class Connection:
    """One keep-alive client connection (reopened after a close)."""

    def __init__(self, port: int):
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()
        self.reader = self.writer = None


# --- the record ---------------------------------------------------------------------------------


class Recorder:
    def __init__(self, port: int, client_timeout: float, t0: float):
        self.port = port
        self.timeout = client_timeout
        self.t0 = t0
        self.records: list[dict] = []
        self.extra_bytes: list[dict] = []  # answers that came with bytes nobody asked for
        self.epoch = 1

    def now(self) -> float:
        return time.monotonic() - self.t0

    def new_record(self, kind: str, path: str, queued: bool, source: str, **extra) -> dict:
        record = {"id": len(self.records), "kind": kind, "path": path, "queued": queued,
                  "source": source, "t_send": self.now(), "t_end": None, "outcome": None,
                  "status": None, "latency_ms": None, "message": "", "epoch_hint": self.epoch}
        record.update(extra)
        self.records.append(record)
        return record

    def finish(self, record: dict, outcome: str, status: int | None = None,
               body: bytes = b"", headers: dict | None = None) -> None:
        record["t_end"] = self.now()
        record["latency_ms"] = round((record["t_end"] - record["t_send"]) * 1000, 3)
        record["outcome"] = outcome
        record["status"] = status
        if status is not None and status != 200:
            record["message"] = error_message(body)[:300]
            if status == 503:
                record["retry_after"] = (headers or {}).get("retry-after")
        if status == 200 and body[:1] == b"{":
            try:
                value = json.loads(body)
            except ValueError:
                value = None
            if isinstance(value, dict) and isinstance(value.get("id"), int):
                record["answer_id"] = value["id"]
        record["body_ok"] = status != 200 or bool(body)

    async def send(self, connection: Connection, kind: str, method: str, target: str,
                   body: bytes = b"", content_type: str = "", queued: bool = True,
                   source: str = "steady", close: bool = False, **extra) -> tuple[dict, bytes]:
        """Sends one request on `connection` (opened if needed) and records it."""
        path = target.split("?", 1)[0]
        record = self.new_record(kind, path, queued, source, **extra)
        answer = b""
        try:
            if connection.writer is None:
                try:
                    await asyncio.wait_for(connection.open(), self.timeout)
                except ConnectionRefusedError:
                    self.finish(record, "refused")
                    return record, answer
            else:
                record["reused"] = True
                if connection.reader is not None and len(connection.reader._buffer) > 0:  # noqa: SLF001
                    self.extra_bytes.append({"before": record["id"],
                                             "bytes": bytes(connection.reader._buffer[:80]).hex()})
            connection.writer.write(build_request(method, target, body, content_type, close,
                                                  self.port))
            status, headers, answer = await asyncio.wait_for(read_response(connection.reader),
                                                             self.timeout)
            self.finish(record, "answered", status, answer, headers)
            if close or headers.get("connection", "").lower() == "close":
                connection.close()
        except NoAnswer:
            self.finish(record, "reset")
            connection.close()
        except (ConnectionError, OSError):
            self.finish(record, "reset")
            connection.close()
        except asyncio.TimeoutError:
            self.finish(record, "timeout")
            connection.close()
        return record, answer


# --- what is sent -------------------------------------------------------------------------------

PLAYLISTS = ["campus-news", "lectures", "music-videos"]
TITLES = ["News", "Weather", "Café Ünïcode", "Talk & Jazz", "Lecture <1>", "Ciné-club",
          "Morning \"Show\"", "Sport", "Late Film", "日本語ニュース"]


def iso(epoch_minutes: int, offset_minutes: int) -> str:
    """An ISO 8601 time with offset, from minutes since 2026-01-01T00:00Z (UTC)."""
    base = 1767225600  # 2026-01-01T00:00:00Z
    local = time.gmtime(base + (epoch_minutes + offset_minutes) * 60)
    sign = "+" if offset_minutes >= 0 else "-"
    return (time.strftime("%Y-%m-%dT%H:%M:%S", local) +
            f"{sign}{abs(offset_minutes) // 60:02d}:{abs(offset_minutes) % 60:02d}")


def xmltv_time(epoch_minutes: int, offset_minutes: int) -> str:
    text = iso(epoch_minutes, offset_minutes)
    return (text[0:4] + text[5:7] + text[8:10] + text[11:13] + text[14:16] + text[17:19] + " " +
            text[19] + text[20:22] + text[23:25])


def xml_escape(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


class Mix:
    """The seeded choice of requests. Names and channels are unique per import, so each import's
    schedule can be found in the listing and in the all-schedules export."""

    def __init__(self, rng: random.Random, tag: str):
        self.rng = rng
        self.tag = tag
        self.serial = 0

    def unique(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}-{self.tag}-{self.serial}"

    def items(self, latin1: bool = False) -> list[dict]:
        rng = self.rng
        start = rng.randrange(0, 500_000)
        offset = rng.choice([0, 60, 120, -300, 330])
        out = []
        for _ in range(rng.randint(1, 4)):
            title = rng.choice(TITLES[:6] if latin1 else TITLES)
            duration = rng.choice([60, 300, 1800, 3600])
            item = {"title": title, "start": iso(start, offset), "duration": duration,
                    "offset": offset, "start_minutes": start}
            if rng.random() < 0.5:
                item["url"] = f"http://example.org/{rng.randrange(10**6)}.mp4"
            out.append(item)
            start += duration // 60 + rng.choice([0, 0, 5])
        return out

    def import_json(self, valid: bool) -> tuple[str, bytes, dict]:
        name, channel = self.unique("soak"), self.unique("c")
        items = self.items()
        sent = [{k: v for k, v in item.items() if k in ("title", "url", "start", "duration")}
                for item in items]
        how = "valid"
        if not valid:
            how = self.rng.choice(["overlap", "no_offset", "malformed", "bad_duration"])
            if how == "overlap":
                sent.append(dict(sent[0]))
            elif how == "no_offset":
                sent[0]["start"] = sent[0]["start"][:19]
            elif how == "bad_duration":
                sent[-1]["duration"] = 0
        body = json.dumps({"name": name, "channel": channel, "items": sent},
                          ensure_ascii=False).encode()
        if how == "malformed":
            body = body[: len(body) // 2]
        return how, body, {"name": name, "channel": channel, "form": "json", "valid": valid,
                           "items": normalize(items)}

    def import_xml(self, valid: bool) -> tuple[str, bytes, str, dict]:
        name, channel = self.unique("soak"), self.unique("c")
        latin1 = self.rng.random() < 0.25
        items = self.items(latin1)
        lines = ["<tv>", f'  <channel id="{channel}"><display-name>{xml_escape(name)}'
                         "</display-name></channel>"]
        for item in items:
            start = item["start_minutes"]
            stop = start + item["duration"] // 60
            url = f"<url>{xml_escape(item['url'])}</url>" if "url" in item else ""
            lines.append(f'  <programme start="{xmltv_time(start, item["offset"])}" '
                         f'stop="{xmltv_time(stop, item["offset"])}" channel="{channel}">'
                         f"<title>{xml_escape(item['title'])}</title>{url}</programme>")
        how = "valid"
        if not valid:
            how = self.rng.choice(["unclosed", "bad_time", "overlap"])
            if how == "unclosed":
                lines[-1] = lines[-1].replace("</programme>", "")
            elif how == "bad_time":
                lines[-1] = lines[-1].replace('start="', 'start="99', 1)
            else:
                lines.append(lines[-1])
        lines.append("</tv>")
        encoding = "ISO-8859-1" if latin1 else "UTF-8"
        text = f'<?xml version="1.0" encoding="{encoding}"?>\n' + "\n".join(lines) + "\n"
        body = text.encode("latin-1" if latin1 else "utf-8")
        content_type = "application/xml" if self.rng.random() < 0.5 else "text/xml"
        return how, body, content_type, {"name": name, "channel": channel, "form": "xmltv",
                                         "valid": valid, "encoding": encoding,
                                         "items": normalize(items)}


def normalize(items: list[dict]) -> list[list]:
    """Items as the store must give them back: sorted by start, [title, url, start, duration]."""
    out = [[item["title"], item.get("url", ""), item["start"], item["duration"]] for item in items]
    return sorted(out, key=lambda row: (row[2], row[0]))


# The steady clients' mix: (weight, name). Each name is one request builder in choose().
WEIGHTS = [(18, "import_json"), (4, "import_json_invalid"), (10, "import_xml"),
           (4, "import_xml_invalid"), (1, "import_bad_utf8"), (6, "schedule_playlist"),
           (1, "schedule_playlist_unknown"), (7, "schedules"), (5, "playlists"),
           (8, "export_json"), (5, "export_xml"), (1, "export_all"), (5, "infowars"),
           (3, "system_info"), (3, "queue_stats"), (3, "metrics"), (1, "healthz"), (1, "readyz"),
           (1, "wrong_method"), (1, "unknown_path"), (1, "wrong_type")]


IMPORTS = {"import_json", "import_json_invalid", "import_xml", "import_xml_invalid",
           "import_bad_utf8", "schedule_playlist", "schedule_playlist_unknown"}


def choose(mix: Mix, known_ids: list[int], import_allowed: bool = True) -> dict:
    """One request of the mix: method, target, body, content type, queued, kind, import. Without
    `import_allowed` no import is chosen; the all-schedules export only while fewer than 3,000
    schedules are known (its answer grows with the data)."""
    rng = mix.rng
    name = rng.choices([n for _, n in WEIGHTS], [w for w, _ in WEIGHTS])[0]
    while (name in IMPORTS and not import_allowed) or (name == "export_all" and len(known_ids) >= 3000):
        name = rng.choices([n for _, n in WEIGHTS], [w for w, _ in WEIGHTS])[0]
    request = {"kind": name, "method": "GET", "body": b"", "content_type": "", "queued": True}
    if name in ("import_json", "import_json_invalid"):
        how, body, content = mix.import_json(name == "import_json")
        request.update(method="POST", target="/api/import-schedule", body=body,
                       content_type="application/json", kind=f"{name}:{how}", content=content)
    elif name in ("import_xml", "import_xml_invalid"):
        how, body, content_type, content = mix.import_xml(name == "import_xml")
        request.update(method="POST", target="/api/import-schedule", body=body,
                       content_type=content_type, kind=f"{name}:{how}", content=content)
    elif name == "import_bad_utf8":  # refused by the server itself, before the queue
        request.update(method="POST", target="/api/import-schedule",
                       body=b'{"name":"bad \xff","channel":"x","items":[]}',
                       content_type="application/json", queued=False)
    elif name.startswith("schedule_playlist"):
        playlist = rng.choice(PLAYLISTS) if name == "schedule_playlist" else "no-such-playlist"
        content = {"name": mix.unique("pl"), "channel": mix.unique("c"), "form": "playlist",
                   "valid": name == "schedule_playlist", "items": None}
        body = json.dumps({"playlist": playlist, "channel": content["channel"],
                           "name": content["name"],
                           "start": iso(rng.randrange(0, 500_000), 60)}).encode()
        request.update(method="POST", target="/api/schedule-playlist", body=body,
                       content_type="application/json", content=content)
    elif name in ("export_json", "export_xml"):
        endpoint = "/api/export-schedule-json" if name == "export_json" else "/api/export-schedule-xml"
        known = known_ids and rng.random() < 0.85
        schedule_id = rng.choice(known_ids) if known else 10_000_000 + rng.randrange(1000)
        request.update(target=f"{endpoint}?id={schedule_id}", kind=f"{name}:{'known' if known else 'unknown'}")
    else:
        request.update({
            "schedules": {"target": "/api/schedules"},
            "playlists": {"target": "/api/playlists"},
            "export_all": {"target": "/api/export-all-schedules-xml"},
            "infowars": {"target": f"/api/infowars-videos?offset={rng.randrange(45)}&limit={rng.randint(1, 20)}"},
            "system_info": {"target": "/api/system-info", "queued": False},
            "queue_stats": {"target": "/api/queue-stats", "queued": False},
            "metrics": {"target": "/metrics", "queued": False},
            "healthz": {"target": "/healthz", "queued": False},
            "readyz": {"target": "/readyz", "queued": False},
            "wrong_method": {"method": "DELETE", "target": "/api/schedules", "queued": False},
            "unknown_path": {"target": "/api/no-such-endpoint", "queued": False},
            "wrong_type": {"method": "POST", "target": "/api/import-schedule", "body": b"a=b",
                           "content_type": "application/x-www-form-urlencoded", "queued": False},
        }[name])
    return request
