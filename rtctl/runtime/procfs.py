"""Processes as Linux's /proc shows them: alive or not, and which ones a process started (its descendants).

Used where rtctl must know about processes it does not own a handle to: a Ray worker (is the policy
actor's process gone?), Ray's own processes (`rtctl.runtime.ray_reaper`), and everything a command under a fault
drill started (`rtctl.bench.procs`). A zombie (exited, not yet reaped by its parent) counts as gone.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Optional


class Stat(NamedTuple):
    state: str
    ppid: int
    start: str  # start time in clock ticks since boot: with the pid, it names one process (pids are reused)


def stat(pid: int) -> Optional[Stat]:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # the name may hold spaces
    except (OSError, IndexError):
        return None
    return Stat(fields[0], int(fields[1]), fields[19])


def alive(pid: int) -> bool:
    st = stat(pid)
    return st is not None and st.state != "Z"


def descendants(pid: int) -> dict[int, str]:
    """Every live process below ``pid`` → its start time."""
    kids: dict[int, list[int]] = {}
    starts: dict[int, str] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and (st := stat(int(d.name))) is not None and st.state != "Z":
            kids.setdefault(st.ppid, []).append(int(d.name))
            starts[int(d.name)] = st.start
    out: dict[int, str] = {}
    todo = [pid]
    while todo:
        for c in kids.get(todo.pop(), []):
            if c not in out:
                out[c] = starts[c]
                todo.append(c)
    return out


def same_process(pid: int, start: str) -> bool:
    """``pid`` is still the process that had this start time (not gone, not reused)."""
    st = stat(pid)
    return st is not None and st.state != "Z" and st.start == start


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"
