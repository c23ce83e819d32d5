#!/usr/bin/env python3
"""Soak and chaos run of the example server (called by bench/soak/run.sh; see its header).

One run: a seeded mixed workload on up to 1,000 loopback connections, faults injected on a seeded
schedule, one SIGTERM and restart on the same data folder, then the oracle (bench/soak/oracle.py)
over the client's record. Writes into --out: records.jsonl, samples.json, faults.json,
summary.json, report.txt, soak.svg, server-*.log. Exits 1 on any oracle violation.
Standard library only; run as root for the file system faults (a tmpfs it mounts itself).
"""

import argparse
import asyncio
import ctypes
import errno
import json
import logging
import os
import random
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "memory"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import proctree  # noqa: E402
import oracle  # noqa: E402
import report  # noqa: E402
from workload import IMPORTS, Connection, Mix, Recorder, build_request, choose, read_response, NoAnswer  # noqa: E402

MS_RDONLY, MS_REMOUNT = 1, 32
libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                       ctypes.c_char_p]

# The server's settings in a soak run: short timeouts so the faults show within a minute.
POOL_SIZE = 4
QUEUE_CAPACITY = 48
QUEUE_TIMEOUT_MS = 3000
TASK_TIMEOUT_MS = 1500
HEADER_TIMEOUT_MS = 2000
BODY_TIMEOUT_MS = 2000
GRACE_MS = 3000
WORKER_DELAY_MS = 10  # every worker run sleeps this long first, so kills land mid-request
MAX_CONNECTIONS = 1000
SERVER_NOFILE = 4096  # the server's descriptor limit (soft and hard)
STEADY_CLIENTS = 40
IMPORTS_PER_SECOND = 25  # on average, and at most IMPORTS_PER_RUN in a whole run (the listing
IMPORTS_PER_RUN = 15000  # and the all-schedules export grow with the data)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


class Server:
    """The schedule_server process of one epoch."""

    def __init__(self, args, port: int, data_dir: str, epoch: int):
        self.args, self.port, self.data_dir, self.epoch = args, port, data_dir, epoch
        self.log_path = os.path.join(args.out, f"server-{epoch}.log")
        self.log = open(self.log_path, "wb")
        env = dict(os.environ, SCHEDULE_WORKER_DELAY_MS=str(WORKER_DELAY_MS))
        command = [os.path.join(args.build_dir, "examples/schedule_server/schedule_server"),
                   "--worker", os.path.join(args.build_dir, "examples/schedule_worker/schedule_worker"),
                   "--port", str(port), "--mode", args.mode, "--pool-size", str(POOL_SIZE),
                   "--queue-capacity", str(QUEUE_CAPACITY),
                   "--queue-timeout-ms", str(QUEUE_TIMEOUT_MS),
                   "--task-timeout-ms", str(TASK_TIMEOUT_MS),
                   "--header-timeout-ms", str(HEADER_TIMEOUT_MS),
                   "--body-timeout-ms", str(BODY_TIMEOUT_MS),
                   "--idle-timeout-ms", "3600000", "--shutdown-grace-ms", str(GRACE_MS),
                   "--threads", "2", "--data-dir", data_dir]

        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        self.nofile = SERVER_NOFILE if hard == resource.RLIM_INFINITY else min(SERVER_NOFILE, hard)

        def limits():
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

        self.process = subprocess.Popen(command, stdout=self.log, stderr=self.log, env=env,
                                        preexec_fn=limits)
        self.pid = self.process.pid
        self.seen: dict[int, bytes] = {}  # every descendant ever seen: pid -> its /proc stat start time

    def descendants(self) -> list[int]:
        found = proctree.descendants(self.pid)
        for pid in found:
            if pid not in self.seen:
                self.seen[pid] = start_time(pid)
        return found

    def workers(self) -> list[int]:
        return [pid for pid in self.descendants() if b"schedule_worker" in cmdline(pid)]


def process_state(pid: int) -> str:
    """The state letter of /proc/PID/stat ("" when the process is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0].decode()
    except (OSError, IndexError):
        return ""


def signal_quietly(pid: int, number: int) -> None:
    try:
        os.kill(pid, number)
    except ProcessLookupError:
        pass


def start_time(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[19]
    except (OSError, IndexError):
        return b""


class Harness:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.t0 = time.monotonic()
        self.port = free_port()
        self.rec = Recorder(self.port, client_timeout=40.0, t0=self.t0)
        self.faults: list[dict] = []
        self.windows: list[dict] = []  # {kind, start, end}: when a fault was in force
        self.samples: list[dict] = []
        self.notes: list[str] = []
        self.violations: list[str] = []
        self.known_ids: list[int] = []
        self.imports_sent = 0
        self.load_on = asyncio.Event()
        self.stop_load = False
        self.paused = False
        self.idle_clients = 0
        self.quiet: dict[str, dict] = {}
        self.shutdown_window: list[float] = []
        self.stats_snapshots: list[dict] = []
        self.exits: list[dict] = []
        self.tmp = tempfile.mkdtemp(prefix="btq-soak-")
        self.mount_point = os.path.join(self.tmp, "fs")
        self.data_dir = os.path.join(self.mount_point, "data")
        self.mounted = False
        self.server: Server | None = None

    def now(self) -> float:
        return time.monotonic() - self.t0

    # --- the data folder's file system -------------------------------------------------------

    def mount(self) -> None:
        os.makedirs(self.mount_point)
        size_mb = 64 + self.args.seconds // 4
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755",
                                 "tmpfs", self.mount_point], capture_output=True, text=True)
        self.mounted = result.returncode == 0
        if not self.mounted:
            self.notes.append("tmpfs mount failed (" + result.stderr.strip() + "): the file system "
                              "full and read-only faults are skipped")
        os.makedirs(self.data_dir)

    def remount(self, read_only: bool) -> int:
        flags = MS_REMOUNT | (MS_RDONLY if read_only else 0)
        if libc.mount(b"tmpfs", self.mount_point.encode(), b"tmpfs", flags, None) == 0:
            return 0
        return ctypes.get_errno()

    def cleanup(self) -> None:
        if self.server and self.server.process.poll() is None:
            proctree.kill_tree(self.server.pid)
        if self.mounted:
            self.remount(False)
            subprocess.run(["umount", "-l", self.mount_point], capture_output=True)
        shutil.rmtree(self.tmp, ignore_errors=True)

    # --- the server ----------------------------------------------------------------------------

    async def start_server(self, epoch: int) -> None:
        self.server = Server(self.args, self.port, self.data_dir, epoch)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.server.process.poll() is not None:
                raise RuntimeError(f"schedule_server exited at start: see {self.server.log_path}")
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.write(build_request("GET", "/readyz", close=True, port=self.port))
                status, _, _ = await asyncio.wait_for(read_response(reader), 5)
                writer.close()
                if status == 200:
                    return
            except (OSError, NoAnswer, asyncio.TimeoutError):
                pass
            await asyncio.sleep(0.05)
        raise RuntimeError("schedule_server did not become ready within 30 s")

    async def stop_server(self, reason: str) -> dict:
        """SIGTERM, wait for the exit, then check that no worker (or anything it started) is left."""
        server = self.server
        server.descendants()
        server.process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        while server.process.poll() is None and time.monotonic() - started < GRACE_MS / 1000 + 15:
            await asyncio.sleep(0.02)
        exit_code = server.process.poll()
        if exit_code is None:
            self.violations.append(f"{reason}: the server did not exit within the grace + 15 s")
            proctree.kill_tree(server.pid)
            server.process.wait()
            exit_code = "killed"
        elif exit_code != 0:
            self.violations.append(f"{reason}: the server exited with status {exit_code}, not 0")
        await asyncio.sleep(0.2)
        left = [pid for pid, started_at in server.seen.items()
                if started_at and start_time(pid) == started_at]
        left += [int(p) for p in os.listdir("/proc") if p.isdigit() and
                 self.data_dir.encode() in cmdline(int(p)) and int(p) not in left]
        if left:
            self.violations.append(f"{reason}: processes left after the server stopped: {left}")
            for pid in left:
                proctree.kill_tree(pid)
        server.log.close()
        exit_info = {"reason": reason, "exit_code": exit_code,
                     "seconds": round(time.monotonic() - started, 3),
                     "descendants_seen": len(server.seen), "left": left}
        self.exits.append(exit_info)
        return exit_info

    # --- sampling ------------------------------------------------------------------------------

    async def sampler(self) -> None:
        while not self.stop_load:
            server = self.server
            if server and server.process.poll() is None:
                rss, _ = proctree.memory_kib(server.pid)
                workers = server.workers()
                self.samples.append({"t": round(self.now(), 2), "epoch": server.epoch,
                                     "rss_kib": rss, "fds": fd_count(server.pid),
                                     "workers": len(workers), "cpu_s": cpu_seconds(server.pid),
                                     "worker_rss_kib": sum(proctree.memory_kib(p)[0] for p in workers)})
            await asyncio.sleep(0.5)

    async def quiet_sample(self, label: str) -> None:
        """Pauses the load until every client connection is closed and the queue is idle, then
        samples the server's resident size and descriptors."""
        self.paused = True
        deadline = time.monotonic() + 20
        stats = {}
        settled = False
        while time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            stats_sent = self.now()
            stats = await self.harness_get("/api/queue-stats")
            stats_received = self.now()
            info = await self.harness_get("/api/system-info")
            try:
                pool = stats["processPool"]
                connections = info["server"]["openConnections"]
            except (KeyError, TypeError):
                continue
            if (self.idle_clients >= STEADY_CLIENTS and pool["activeProcesses"] == 0 and
                    pool["queuedTasks"] == 0 and connections <= 1 and
                    (self.args.mode == "spawn" or len(self.server.workers()) == POOL_SIZE)):
                settled = True
                break
        await asyncio.sleep(0.3)
        rss, _ = proctree.memory_kib(self.server.pid)
        self.quiet[label] = {"t": round(self.now(), 2), "epoch": self.server.epoch, "rss_kib": rss,
                             "fds": fd_count(self.server.pid), "stats": stats,
                             "stats_sent": stats_sent, "stats_received": stats_received,
                             "settled": settled}
        if not settled:
            self.notes.append(f"{label}: the server did not settle (connections closed, queue "
                              "idle, every worker up) within 20 s")
        self.paused = False

    async def harness_get(self, target: str) -> dict:
        connection = Connection(self.port)
        queued = not target.startswith(("/api/queue-stats", "/api/system-info", "/metrics"))
        record, body = await self.rec.send(connection, "harness:" + target.split("?")[0], "GET",
                                           target, queued=queued, source="harness", close=True)
        connection.close()
        try:
            return json.loads(body) if record["status"] == 200 else {}
        except ValueError:
            return {}

    # --- clients -------------------------------------------------------------------------------

    async def steady_client(self, index: int) -> None:
        mix = Mix(random.Random(f"{self.args.seed}-steady-{index}"), f"{self.args.seed}s{index}")
        connection = Connection(self.port)
        idle = False
        while not self.stop_load:
            if self.paused or not self.load_on.is_set():
                if not idle:
                    connection.close()
                    idle = True
                    self.idle_clients += 1
                await asyncio.sleep(0.05)
                continue
            if idle:
                idle = False
                self.idle_clients -= 1
            request = choose(mix, self.known_ids, self.import_allowed())
            if request["kind"].split(":")[0] in IMPORTS:
                self.imports_sent += 1
            record, _ = await self.rec.send(
                connection, request["kind"], request["method"], request["target"],
                request["body"], request["content_type"], queued=request["queued"],
                source="steady", **({"import": request["content"]} if "content" in request else {}))
            if record.get("answer_id") and record["kind"].startswith(("import", "schedule_playlist")):
                self.known_ids.append(record["answer_id"])
            if record["outcome"] == "refused":
                await asyncio.sleep(0.05)
            await asyncio.sleep(mix.rng.random() * 0.03)
        if not idle:
            self.idle_clients += 1
        connection.close()

    def import_allowed(self) -> bool:
        """Imports (POSTs) at most IMPORTS_PER_SECOND on average and IMPORTS_PER_RUN in the whole
        run, so that in a long run the listing's answer stays below about a megabyte."""
        rate = min(IMPORTS_PER_SECOND, IMPORTS_PER_RUN / self.args.seconds)
        return self.imports_sent < rate * self.now()

    async def one_shot(self, source: str, rng: random.Random) -> None:
        """One connection, one cheap queued GET, Connection: close (bursts)."""
        target = rng.choice(["/api/playlists", "/api/schedules", "/api/infowars-videos?limit=5",
                             "/api/export-schedule-json?id=1", "/healthz"])
        connection = Connection(self.port)
        await self.rec.send(connection, "burst:" + target.split("?")[0], "GET", target,
                            queued=target != "/healthz", source=source, close=True)
        connection.close()

    async def burster(self) -> None:
        rng = random.Random(f"{self.args.seed}-bursts")
        while not self.stop_load:
            await asyncio.sleep(rng.uniform(4, 9))
            if self.stop_load or self.paused or not self.load_on.is_set():
                continue
            await self.burst(rng, rng.randint(200, MAX_CONNECTIONS - STEADY_CLIENTS - 20))

    async def burst(self, rng: random.Random, size: int) -> None:
        self.faults.append({"kind": "burst", "t": round(self.now(), 2), "connections": size})
        await asyncio.gather(*(self.one_shot("burst", rng) for _ in range(size)))

    async def slow_clients(self) -> None:
        """Dribbles requests a byte or a few at a time: most finish before the header timeout
        (200), some do not (408)."""
        rng = random.Random(f"{self.args.seed}-slow")
        while not self.stop_load:
            await asyncio.sleep(rng.uniform(0.5, 2))
            if self.paused or not self.load_on.is_set():
                continue
            too_slow = rng.random() < 0.3
            asyncio.ensure_future(self.dribble(rng, too_slow))

    async def dribble(self, rng: random.Random, too_slow: bool) -> None:
        raw = build_request("GET", "/api/playlists", close=True, port=self.port)
        total = (HEADER_TIMEOUT_MS / 1000) * (1.6 if too_slow else 0.4)
        record = self.rec.new_record("slow:" + ("too_slow" if too_slow else "in_time"),
                                     "/api/playlists", True, "slow")
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            self.rec.finish(record, "refused")
            return
        try:
            step = max(1, len(raw) // 20)
            for offset in range(0, len(raw), step):
                if len(reader._buffer) > 0 or reader.at_eof():  # noqa: SLF001
                    break  # answered (408) before the request was whole: stop sending, read it
                writer.write(raw[offset:offset + step])
                await asyncio.sleep(total / 20)
            status, headers, body = await asyncio.wait_for(read_response(reader), 40)
            self.rec.finish(record, "answered", status, body, headers)
        except (NoAnswer, OSError):
            self.rec.finish(record, "reset")
        except asyncio.TimeoutError:
            self.rec.finish(record, "timeout")
        finally:
            writer.transport.abort()

    async def disconnecting_clients(self) -> None:
        """Hangs up mid-request: after part of a header, or after a whole import, before its answer."""
        rng = random.Random(f"{self.args.seed}-hangup")
        mix = Mix(rng, f"{self.args.seed}h")
        while not self.stop_load:
            await asyncio.sleep(rng.uniform(0.2, 1))
            if self.paused or not self.load_on.is_set():
                continue
            partial = rng.random() < 0.4
            if partial:
                raw = build_request("GET", "/api/schedules", port=self.port)
                raw = raw[: rng.randint(5, len(raw) - 3)]
                record = self.rec.new_record("hangup:partial_header", "/api/schedules", False, "disconnect")
            else:
                _, body, content = mix.import_json(True)
                raw = build_request("POST", "/api/import-schedule", body, "application/json",
                                    port=self.port)
                record = self.rec.new_record("hangup:after_import", "/api/import-schedule", True,
                                             "disconnect", **{"import": content})
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.write(raw)
                await writer.drain()
                await asyncio.sleep(rng.uniform(0, 0.03))
                writer.transport.abort()
                self.rec.finish(record, "self_disconnect")
            except OSError:
                self.rec.finish(record, "refused")

    # --- faults --------------------------------------------------------------------------------

    def window(self, kind: str, start: float, **extra) -> dict:
        entry = {"kind": kind, "start": round(start, 3), "end": None, **extra}
        self.windows.append(entry)
        return entry

    async def fault_kill(self) -> None:
        workers = self.server.workers()
        if not workers:
            self.faults.append({"kind": "sigkill_worker", "t": round(self.now(), 2), "skipped": "no worker alive"})
            return
        victim = self.rng.choice(workers)
        entry = self.window("sigkill_worker", self.now(), pid=victim)
        signal_quietly(victim, signal.SIGKILL)
        await asyncio.sleep(0.5)
        entry["end"] = round(self.now(), 3)

    async def fault_stop(self) -> None:
        """A worker SIGSTOPped for longer than the task timeout and its kill grace: the server
        must stop it itself (504 to its request) before the harness sends SIGCONT."""
        entry = self.window("sigstop_worker", self.now())
        victim = 0
        for _ in range(50):  # a spawned worker may end before the signal lands: try another
            workers = self.server.workers()
            if workers:
                victim = self.rng.choice(workers)
                signal_quietly(victim, signal.SIGSTOP)
                await asyncio.sleep(0.01)
                if process_state(victim) == "T":
                    break
            victim = 0
            await asyncio.sleep(0.02)
        entry["pid"] = victim
        await asyncio.sleep(TASK_TIMEOUT_MS / 1000 + 1.5)
        state = process_state(victim) if victim else ""
        entry["state_at_sigcont"] = state or "gone"
        if victim:
            signal_quietly(victim, signal.SIGCONT)
        if state == "T":
            text = (f"sigstop fault: worker {victim} still stopped {TASK_TIMEOUT_MS / 1000 + 1.5} s "
                    "later: the task timeout did not stop it")
            # A stopped pool worker that was idle is only found out once a request reaches it.
            (self.violations if self.args.mode == "spawn" else self.notes).append(text)
        await asyncio.sleep(0.5)
        entry["end"] = round(self.now(), 3)

    async def fault_full(self) -> None:
        if not self.mounted:
            return
        entry = self.window("disk_full", self.now())
        ballast = os.path.join(self.mount_point, "ballast")
        written = 0
        with open(ballast, "wb", buffering=0) as f:
            for chunk in (1 << 20, 1 << 12, 512):
                block = b"\0" * chunk
                while True:
                    try:
                        written += f.write(block)
                    except OSError as failure:
                        if failure.errno != errno.ENOSPC:
                            raise
                        break
        entry["ballast_bytes"] = written
        await asyncio.sleep(3)
        os.unlink(ballast)
        entry["end"] = round(self.now(), 3)
        await self.recovery("disk_full")

    async def fault_read_only(self) -> None:
        if not self.mounted:
            return
        # The kernel refuses a read-only remount (EBUSY) while any process has a file of the file
        # system open for writing, and the workers hold schedules.db open. So: the server stopped
        # for a moment (it can start no worker), its workers killed, the remount done, the server
        # continued.
        entry = self.window("read_only", self.now())
        attempts = 0
        code = -1
        os.kill(self.server.pid, signal.SIGSTOP)
        try:
            for attempts in range(1, 51):
                for pid in self.server.workers():
                    signal_quietly(pid, signal.SIGKILL)
                await asyncio.sleep(0.01)
                code = self.remount(True)
                if code == 0:
                    break
        finally:
            os.kill(self.server.pid, signal.SIGCONT)
        entry["remount_attempts"] = attempts
        if code != 0:
            entry["failed"] = os.strerror(code)
            self.violations.append(f"read_only fault: remount ro failed: {os.strerror(code)}")
        await asyncio.sleep(3)
        code = self.remount(False)
        if code != 0:
            self.violations.append(f"read_only fault: remount rw failed: {os.strerror(code)}")
        entry["end"] = round(self.now(), 3)
        await self.recovery("read_only")

    async def fault_emfile(self) -> None:
        """The server's descriptor limit set to what it has open, so every accept fails EMFILE,
        while 50 new connections wait; then raised again. The steady clients pause meanwhile, so
        the CPU time measured is the accept loop's."""
        self.paused = True
        await asyncio.sleep(0.5)
        pid = self.server.pid
        entry = self.window("emfile", self.now())
        open_fds = fd_count(pid)
        # Only the soft limit: raising a hard limit needs CAP_SYS_RESOURCE, which a container may lack.
        subprocess.run(["prlimit", f"--pid={pid}", f"--nofile={open_fds}:"], check=True)
        log_before = os.path.getsize(self.server.log_path)
        cpu_before, t_before = cpu_seconds(pid), time.monotonic()
        rng = random.Random(f"{self.args.seed}-emfile-{len(self.faults)}")
        waiting = asyncio.gather(*(self.one_shot("emfile", rng) for _ in range(50)))
        await asyncio.sleep(3)
        cpu = (cpu_seconds(pid) - cpu_before) / (time.monotonic() - t_before)
        with open(self.server.log_path, "rb") as log:
            log.seek(log_before)
            failures = log.read().count(b"accept failed")
        subprocess.run(["prlimit", f"--pid={pid}", f"--nofile={self.server.nofile}:"], check=True)
        entry.update(limit=open_fds, cpu_cores=round(cpu, 3), accept_failures=failures,
                     seconds=3)
        if self.server.process.poll() is not None:
            self.violations.append("emfile fault: the server died")
        if cpu > 0.25:
            self.violations.append(f"emfile fault: the server used {cpu:.2f} cores while accept "
                                   "failed (a spinning accept loop?)")
        if failures > 3 * 40:
            self.violations.append(f"emfile fault: {failures} failed accepts logged in 3 s "
                                   "(the loop should pause between tries)")
        await asyncio.wait_for(waiting, 60)
        entry["end"] = round(self.now(), 3)
        self.paused = False
        await self.recovery("emfile")

    async def recovery(self, kind: str) -> None:
        """After a fault is lifted the service must work again: a valid import answered 200
        within 15 s (tries every 0.5 s)."""
        mix = Mix(random.Random(f"{self.args.seed}-recovery-{len(self.faults)}"),
                  f"{self.args.seed}r{len(self.faults)}")
        started = time.monotonic()
        tries = 0
        while time.monotonic() - started < 15:
            tries += 1
            _, body, content = mix.import_json(True)
            connection = Connection(self.port)
            record, _ = await self.rec.send(connection, "recovery:import_json", "POST",
                                            "/api/import-schedule", body, "application/json",
                                            source="harness", close=True, **{"import": content})
            connection.close()
            if record["status"] == 200:
                self.faults.append({"kind": "recovered", "after": kind, "t": round(self.now(), 2),
                                    "tries": tries, "seconds": round(time.monotonic() - started, 2)})
                return
            await asyncio.sleep(0.5)
        self.violations.append(f"after the {kind} fault: no import answered 200 within 15 s "
                               f"({tries} tries)")

    async def fault_runner(self, until: float, whole_cycle: bool) -> None:
        """Faults in seeded order, cycle after cycle, until `until`; with `whole_cycle` the first
        cycle (every kind of fault) runs whole, however long it takes."""
        kinds = ["sigkill_worker", "sigkill_worker", "sigstop_worker", "disk_full", "read_only",
                 "emfile", "sigkill_worker"]
        first = whole_cycle
        while first or self.now() < until:
            plan = kinds[:]
            self.rng.shuffle(plan)
            for kind in plan:
                await asyncio.sleep(self.rng.uniform(0.3, 1.0))
                if self.now() > until and not first:
                    return
                self.faults.append({"kind": kind, "t": round(self.now(), 2)})
                await {"sigkill_worker": self.fault_kill, "sigstop_worker": self.fault_stop,
                       "disk_full": self.fault_full, "read_only": self.fault_read_only,
                       "emfile": self.fault_emfile}[kind]()
            first = False

    # --- the run -------------------------------------------------------------------------------

    async def run(self) -> int:
        args = self.args
        self.mount()
        await self.start_server(1)
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        soft = 8192 if hard == resource.RLIM_INFINITY else min(8192, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        clients = [asyncio.ensure_future(self.steady_client(i)) for i in range(STEADY_CLIENTS)]
        helpers = [asyncio.ensure_future(c) for c in (self.sampler(), self.burster(),
                                                      self.slow_clients(),
                                                      self.disconnecting_clients())]
        total = args.seconds
        warm_up = max(5.0, total * 0.1)
        term_at = total * 0.62
        self.load_on.set()
        # Warm-up: load, one full burst, then the baseline taken quiet.
        await asyncio.sleep(warm_up / 2)
        await self.burst(random.Random(f"{args.seed}-warm"), MAX_CONNECTIONS - STEADY_CLIENTS - 20)
        await asyncio.sleep(max(0.0, warm_up - self.now()))
        await self.quiet_sample("warm_up_1")
        await self.fault_runner(term_at - 6, whole_cycle=True)
        await asyncio.sleep(max(0.0, term_at - self.now()))
        # SIGTERM under load, then a restart on the same data folder.
        snapshot_sent = self.now()
        stats = await self.harness_get("/api/queue-stats")
        self.stats_snapshots.append({"epoch": 1, "sent": snapshot_sent, "received": self.now(),
                                     "stats": stats})
        self.shutdown_window = [self.now()]
        self.faults.append({"kind": "sigterm_restart", "t": round(self.now(), 2)})
        await self.stop_server("SIGTERM under load")
        self.rec.epoch = 2
        await self.start_server(2)
        self.shutdown_window.append(self.now())
        await asyncio.sleep(3)
        await self.quiet_sample("warm_up_2")
        await self.fault_runner(total - 8, whole_cycle=False)
        await asyncio.sleep(max(0.0, total - 2 - self.now()))
        # The end: load stopped, counters settled, then the checks through the API.
        self.load_on.clear()
        self.stop_load = True
        await asyncio.gather(*clients, *helpers, return_exceptions=True)
        await self.quiet_sample("after_run")
        end = self.quiet["after_run"]
        self.stats_snapshots.append({"epoch": 2, "sent": end["stats_sent"],
                                     "received": end["stats_received"], "stats": end["stats"],
                                     "quiescent": end["settled"]})
        listing = await self.harness_get("/api/schedules")
        everything = await self.fetch_text("/api/export-all-schedules-xml")
        exports = await self.sample_exports()
        await self.stop_server("final SIGTERM")
        integrity = self.integrity_check()
        result = oracle.check(self, listing, everything, exports, integrity)
        self.violations.extend(result["violations"])
        self.write_outputs(result)
        return 1 if self.violations else 0

    async def fetch_text(self, target: str) -> str:
        connection = Connection(self.port)
        record, body = await self.rec.send(connection, "harness:" + target, "GET", target,
                                           source="harness", close=True)
        connection.close()
        return body.decode("utf-8", "replace") if record["status"] == 200 else ""

    async def sample_exports(self) -> dict[int, dict]:
        """export-schedule-json of up to 300 imports answered 200 (the rest are checked through
        the all-schedules export)."""
        ids = [r["answer_id"] for r in self.rec.records
               if r.get("answer_id") and r.get("import") and r["status"] == 200]
        random.Random(self.args.seed).shuffle(ids)
        out = {}
        for schedule_id in ids[:300]:
            connection = Connection(self.port)
            record, body = await self.rec.send(connection, "harness:export_json", "GET",
                                               f"/api/export-schedule-json?id={schedule_id}",
                                               source="harness", close=True)
            connection.close()
            out[schedule_id] = json.loads(body) if record["status"] == 200 else {"status": record["status"]}
        return out

    def integrity_check(self) -> dict:
        path = os.path.join(self.data_dir, "schedules.db")
        try:
            database = sqlite3.connect(path)  # read-write: a WAL left by a killed worker is replayed
            result = [row[0] for row in database.execute("PRAGMA integrity_check")]
            names = {row[0]: row[1] for row in database.execute("SELECT id, name FROM schedules")}
            database.close()
        except sqlite3.Error as failure:
            return {"ok": False, "result": [f"sqlite3: {failure}"], "names": {}}
        return {"ok": result == ["ok"], "result": result[:10], "names": names}

    def write_outputs(self, result: dict) -> None:
        out = self.args.out
        with open(os.path.join(out, "records.jsonl"), "w") as f:
            for record in self.rec.records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        summary = {"seed": self.args.seed, "mode": self.args.mode, "seconds": self.args.seconds,
                   "violations": self.violations, "notes": self.notes + result["notes"],
                   "faults": self.faults, "windows": self.windows, "quiet": self.quiet,
                   "exits": self.exits, "shutdown_window": self.shutdown_window,
                   "stats_snapshots": self.stats_snapshots, "checks": result["checks"],
                   "settings": {"pool_size": POOL_SIZE, "queue_capacity": QUEUE_CAPACITY,
                                "queue_timeout_ms": QUEUE_TIMEOUT_MS,
                                "task_timeout_ms": TASK_TIMEOUT_MS,
                                "header_timeout_ms": HEADER_TIMEOUT_MS,
                                "worker_delay_ms": WORKER_DELAY_MS,
                                "steady_clients": STEADY_CLIENTS,
                                "max_connections": MAX_CONNECTIONS}}
        with open(os.path.join(out, "summary.json"), "w") as f:
            json.dump(summary, f, indent=1, ensure_ascii=False)
        with open(os.path.join(out, "samples.json"), "w") as f:
            json.dump(self.samples, f)
        text = report.text(summary, self.rec.records, self.samples)
        with open(os.path.join(out, "report.txt"), "w") as f:
            f.write(text)
        with open(os.path.join(out, "report.md"), "w") as f:
            f.write(report.markdown(summary, self.rec.records, self.samples))
        with open(os.path.join(out, "soak.svg"), "w") as f:
            f.write(report.svg(summary, self.rec.records, self.samples))
        print(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mode", choices=["spawn", "pool"], default="pool")
    parser.add_argument("--build-dir", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.seconds < 40:
        parser.error("--seconds must be at least 40 (warm-up, faults, a restart, the checks)")
    os.makedirs(args.out, exist_ok=True)
    # asyncio warns of each write to a connection the server already closed: expected here.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    harness = Harness(args)
    try:
        return asyncio.run(harness.run())
    finally:
        harness.cleanup()


if __name__ == "__main__":
    sys.exit(main())
