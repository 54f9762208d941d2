"""Launcher <-> child process messages: JSON over a multiprocessing pipe (no pickle of our own objects), and the
tick settings every trial process uses (no CPU pinning or busy-waiting: several processes share the cores)."""
from __future__ import annotations

import json
from multiprocessing.connection import Connection
from typing import Any

from rtctl.tick import TickConfig


def send(conn: Connection, **msg: Any) -> None:
    conn.send_bytes(json.dumps(msg).encode())


def recv(conn: Connection, timeout_s: float | None = None) -> dict | None:
    """The next message, or None if none came within timeout_s (None = wait). A launcher that is gone
    reads as {"stop": "launcher gone"}: its children end their run (and brake) instead of running on."""
    try:
        if timeout_s is not None and not conn.poll(timeout_s):
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
