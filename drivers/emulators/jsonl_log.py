"""`JsonlLog`: what an emulator received on its bus, one JSON line per packet, stamped on receipt.

The emulators run on the same host as the driver, so their `time.monotonic_ns()` stamps share the driver's
clock: the log is the bus-level record of when commands really arrived (`rtctl.drivers.bus_stats` reads it).
The serving loop calls `flush_due()` every pass, so the file is never more than `FLUSH_S` behind (the project
rule: every log is flushed at least every 0.5 s).
"""
from __future__ import annotations

import json
import time
from typing import IO

FLUSH_S = 0.25


class JsonlLog:
    def __init__(self, path: str) -> None:
        self._f: IO[str] = open(path, "w", buffering=1 << 16)
        self._flushed = time.monotonic()
        self.count = 0

    def record(self, **fields) -> None:
        self._f.write(json.dumps(fields, separators=(",", ":")) + "\n")
        self.count += 1

    def fault(self, **fields) -> None:
        """A fault the emulator injected (e.g. a push), stamped now; not counted as a received packet."""
        self._f.write(json.dumps({"t_ns": time.monotonic_ns(), **fields}, separators=(",", ":")) + "\n")
        self._f.flush()

    def flush_due(self) -> None:
        now = time.monotonic()
        if now - self._flushed >= FLUSH_S:
            self._f.flush()
            self._flushed = now

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()
