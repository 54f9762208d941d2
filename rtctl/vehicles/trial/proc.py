"""Process plumbing every trial process shares: launcher <-> child messages (JSON over a multiprocessing pipe, no
pickle of our own objects), the children's signal rules, the tick settings (no CPU pinning or busy-waiting:
several processes share the cores), and the injected disk-full fault.

Signals: the launcher owns Ctrl-C. A terminal's Ctrl-C reaches the whole process group, so every child ignores
SIGINT (from before its interpreter starts: `sigint_ignored` around the launch) and hears the launcher's stop or
e-stop over its pipe instead. SIGTERM sent to a child is a clean stop of that child (`ChildSignals.stop`: the
tick leaves its loop, a car brakes, the run folder is completed).
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Iterator

from rtctl.runtime.tick import TickConfig

TERMINATED = "terminated (SIGTERM)"


def send(conn: Connection, **msg: Any) -> None:
    conn.send_bytes(json.dumps(msg).encode())


def recv(conn: Connection, timeout_s: float | None = None, signals: "ChildSignals | None" = None) -> dict | None:
    """The next message, or None if none came within timeout_s (None = wait) or, given ``signals``, once a
    SIGTERM asked this process to stop. A launcher that is gone reads as {"stop": "launcher gone"}: its
    children end their run (and brake) instead of running on."""
    try:
        if signals is not None:  # wait in slices: a signal handler that only sets a flag does not end a poll
            deadline = None if timeout_s is None else time.monotonic() + timeout_s
            while not conn.poll(0.1):
                if signals.stop is not None or (deadline is not None and time.monotonic() >= deadline):
                    return None
        elif timeout_s is not None and not conn.poll(timeout_s):
            return None
        return json.loads(conn.recv_bytes())
    except (EOFError, OSError):
        return {"stop": "launcher gone"}


def send_quietly(conn: Connection, **msg: Any) -> None:
    try:
        send(conn, **msg)
    except (BrokenPipeError, OSError):
        pass  # the launcher is gone; the run folder still has everything


def shared_tick(rate_hz: float) -> TickConfig:
    return TickConfig(rate_hz=rate_hz, spin_us=0.0, pin_cpu="off", gc_pause=True)


class ChildSignals:
    """A trial child's signal rules; `install()` first thing in the child's main function (main thread).
    ``stop`` becomes "terminated (SIGTERM)" when SIGTERM arrives; the loop checks it every tick."""

    def __init__(self) -> None:
        self.stop: str | None = None

    def install(self) -> "ChildSignals":
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the launcher relays Ctrl-C as a stop / e-stop
        signal.signal(signal.SIGTERM, self._on_term)
        return self

    def _on_term(self, signum, frame) -> None:
        self.stop = self.stop or TERMINATED


@contextlib.contextmanager
def sigint_ignored() -> Iterator[None]:
    """Around a child's start: an ignored SIGINT is inherited through fork and exec (a handler is not), so the
    child ignores Ctrl-C while its imports run, before `ChildSignals.install`. Only the few milliseconds of
    the fork are covered, all before the trial starts; a Ctrl-C in them is lost, not misread."""
    if threading.current_thread() is not threading.main_thread():  # signals are the main thread's
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def fill_disk(folder: str | Path) -> int:
    """Fault injection (Linux): every descriptor this process holds open on a file in ``folder`` now points at
    /dev/full, so the next write fails with ENOSPC exactly as on a full disk. Returns how many were redirected."""
    prefix = os.path.realpath(folder) + os.sep
    full = os.open("/dev/full", os.O_WRONLY)
    n = 0
    try:
        for fd in os.listdir("/proc/self/fd"):
            try:
                if os.readlink(f"/proc/self/fd/{fd}").startswith(prefix):
                    os.dup2(full, int(fd))
                    n += 1
            except OSError:  # closed meanwhile (the listing's own descriptor)
                pass
    finally:
        os.close(full)
    return n
