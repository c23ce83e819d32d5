#!/usr/bin/env python3
"""A process and all its descendants, from /proc: find them, measure them, end them.

    python3 bench/memory/proctree.py kill PID [PID...]   # SIGKILL each PID and its descendants

Used by bench/memory/sampler.py (every sample) and by bench/memory/run_memory_bench.sh (cleanup).
/proc/PID/task/TID/children is not on every kernel (CONFIG_PROC_CHILDREN), so the tree is rebuilt
from the parent pid in /proc/*/stat, which always is: about 20 µs a process.
Standard library only.
"""

import os
import signal
import sys
import time


def _read(path: str) -> bytes:
    """The whole file, or b"" when the process is gone (or the file is unreadable)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return b""
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    except OSError:
        return b""
    finally:
        os.close(fd)


def process_table() -> dict[int, tuple[int, str]]:
    """{pid: (parent pid, state letter)} of every process now."""
    table: dict[int, tuple[int, str]] = {}
    for entry in os.scandir("/proc"):
        name = entry.name
        if not name.isdigit():
            continue
        stat = _read(f"/proc/{name}/stat")
        # pid (comm) state ppid ...: comm may hold spaces and parentheses, so split after the last ')'.
        close = stat.rfind(b")")
        if close < 0:
            continue
        fields = stat[close + 2:].split(b" ", 2)
        if len(fields) < 2:
            continue
        table[int(name)] = (int(fields[1]), fields[0].decode("ascii", "replace"))
    return table


def descendants(root: int, table: dict[int, tuple[int, str]] | None = None) -> list[int]:
    """Every descendant of root (children, their children, ...), zombies included."""
    if table is None:
        table = process_table()
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found: list[int] = []
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), ()):
            found.append(child)
            stack.append(child)
    return found


PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def memory_kib(pid: int) -> tuple[int, int]:
    """(resident, shared) of one process in KiB, from /proc/PID/statm; (0, 0) when it is gone or
    a zombie. resident is VmRSS: every page it has in memory, anonymous, file-backed and shared
    memory; shared is the part backed by files or shared memory (its program's code, libraries),
    which other processes may map too. statm is two counters the kernel keeps: reading it costs
    the same for a 2 GiB process as for an idle one (smaps_rollup, which gives Pss, walks every
    page table: 0.3 ms for a 30 MB worker, too slow to sample a thousand of them every 25 ms)."""
    fields = _read(f"/proc/{pid}/statm").split()
    if len(fields) < 3:
        return 0, 0
    return int(fields[1]) * PAGE_KIB, int(fields[2]) * PAGE_KIB


def high_water_kib(pid: int) -> int:
    """VmHWM (the process's peak resident size so far) in KiB; 0 when it is gone."""
    for line in _read(f"/proc/{pid}/status").split(b"\n"):
        if line.startswith(b"VmHWM:"):
            return int(line.split()[1])
    return 0


def _signal(pid: int, number: int) -> None:
    try:
        os.kill(pid, number)
    except (ProcessLookupError, PermissionError):
        pass


def kill_tree(root: int) -> int:
    """SIGKILLs root and every descendant; returns how many processes were signalled.

    The root is stopped first (SIGSTOP), so it can neither start nor reap children while they are
    collected: they stay its descendants (not orphans handed to init) until all are killed."""
    _signal(root, signal.SIGSTOP)
    killed: set[int] = set()
    for _ in range(20):
        living = [pid for pid in descendants(root) if pid not in killed]
        if not living:
            break
        for pid in living:
            _signal(pid, signal.SIGKILL)
            killed.add(pid)
        time.sleep(0.01)
    _signal(root, signal.SIGKILL)
    _signal(root, signal.SIGCONT)
    return len(killed) + 1


def main() -> int:
    if len(sys.argv) < 3 or sys.argv[1] != "kill":
        print(__doc__, file=sys.stderr)
        return 2
    for pid in sys.argv[2:]:
        kill_tree(int(pid))
    return 0


if __name__ == "__main__":
    sys.exit(main())
