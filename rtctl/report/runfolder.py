"""A run folder is the evidence a run leaves: config.yaml, log.jsonl, summary.json, plots/*.png.

The folder is created only after the config validated (a config error never leaves a half-written
folder). Log rows are kept in memory by the tick and written by a background thread row by row (each row is
its own small `json.dumps`, so the writer hands the GIL back between rows and the tick never waits behind
one large encode); `close()` writes whatever is left, so Ctrl-C or a driver fault still leaves a complete log.

Never lose evidence: the writer drains and flushes every ``flush_every_s`` (0.25 s), so a SIGKILL loses at
most that much of log.jsonl; events go to events.jsonl as they happen (same drain); summary.json is
replaced atomically (temp file + rename), first by the partial summaries the run hands over while it runs
(`write_partial`), last by the final one. A write error (a full disk, EIO) never kills the writer thread
with a traceback: it is kept in ``error`` (one line naming the folder) for the run loop to stop on; events
and summaries are still tried after it (they may be on a file that can still be written).
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import threading
from collections import deque
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np


def default_run_dir(kind: str, root: str | Path = "runs") -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    return Path(root) / f"{kind}-{stamp}"


def to_jsonable(x: Any) -> Any:
    """numpy → plain Python, NaN/inf → None (JSON has no NaN; a None in the log means non-finite)."""
    if isinstance(x, np.ndarray):
        return [to_jsonable(v) for v in x.tolist()] if x.dtype.kind == "f" else x.tolist()
    if isinstance(x, (np.floating, float)):
        f = float(x)
        return f if math.isfinite(f) else None
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.bool_,)):
        return bool(x)
    if isinstance(x, Mapping):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v) for v in x]
    return x


def check_out_dir(path: str | Path) -> Path:
    """Before anything starts: a used run folder is refused (one line), never overwritten."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise FileExistsError(f"run folder {path} exists and is not empty; pick another --out")
    return path


class RunLogError(OSError):
    """The run's evidence could not be written (full disk, I/O error): the run stops safely."""


class Terminated(Exception):
    """SIGTERM before the run's loop started: the start unwinds; a clean stop (the CLI exits 0)."""

    def __init__(self) -> None:
        super().__init__("terminated (SIGTERM) during start-up")


class RunFolder:
    """Owns one run folder; use as a context manager so the log is flushed on any exit."""

    def __init__(self, path: str | Path, config_text: str, flush_every_s: float = 0.25) -> None:
        self.path = Path(path)
        if self.path.exists() and any(self.path.iterdir()):
            raise FileExistsError(f"run folder {self.path} exists and is not empty; pick another --out")
        (self.path / "plots").mkdir(parents=True, exist_ok=True)
        (self.path / "config.yaml").write_text(config_text)
        self._pending: deque[dict] = deque()
        self._log = open(self.path / "log.jsonl", "w", buffering=1 << 16)
        self._events_f = open(self.path / "events.jsonl", "a")
        self._pending_events: deque[dict] = deque()
        self._partial: Any = None
        self.error: str | None = None
        self._stop = threading.Event()
        self._flush_every_s = flush_every_s
        self._writer = threading.Thread(target=self._drain_loop, name="rtctl-log-writer", daemon=True)
        self._writer.start()
        self.events: list[dict] = []
        self.closed = False

    # -- log ------------------------------------------------------------------------------------------
    def log(self, row: dict) -> None:
        """Append one tick row; O(1), no I/O (deque.append is atomic under the GIL)."""
        self._pending.append(row)

    def event(self, kind: str, **fields: Any) -> None:
        """A discrete event (fault, restart, hold, reaction): appended to events.jsonl within one drain."""
        e = {"event": kind, **fields}
        self.events.append(e)
        self._pending_events.append(e)

    def write_partial(self, summary: Mapping[str, Any]) -> None:
        """The run so far, for summary.json (written by the writer thread, atomically)."""
        self._partial = summary

    def _drain(self) -> None:
        """Rows, then events, then the partial summary. After a write error the rows are dropped (the run is
        stopping), but events and summaries are still tried: on a disk that is not quite full, or when only
        the log file failed, the `stopped` event and the summary still land."""
        if self.error is None:
            try:
                while self._pending:
                    row = self._pending.popleft()
                    self._log.write(json.dumps(to_jsonable(row), separators=(",", ":")) + "\n")
                self._log.flush()
            except OSError as err:
                self._fail(err)
        if self.error is not None:
            self._pending.clear()
        try:
            while self._pending_events:
                self._events_f.write(json.dumps(to_jsonable(self._pending_events.popleft())) + "\n")
            self._events_f.flush()
            partial, self._partial = self._partial, None
            if partial is not None:
                self.write_json("summary.json", partial)
        except OSError as err:
            self._pending_events.clear()
            self._fail(err)

    def _fail(self, err: OSError) -> None:
        self.error = self.error or f"cannot write the run log in {self.path}: {err.strerror or err}"

    def _drain_loop(self) -> None:
        while not self._stop.wait(self._flush_every_s):
            self._drain()

    # -- summary / close --------------------------------------------------------------------------------
    def write_json(self, name: str, data: Any) -> Path:
        """Atomically: a reader (or a crash) sees the old file or the new one, never half of one."""
        p = self.path / name
        tmp = p.with_name(f".{p.name}.tmp")
        tmp.write_text(json.dumps(to_jsonable(data), indent=2) + "\n")
        os.replace(tmp, p)
        return p

    def close(self, summary: Mapping[str, Any] | None = None) -> None:
        if self.closed:
            return
        self._stop.set()
        self._writer.join(timeout=10)
        self._partial = None
        self._drain()
        for f in (self._log, self._events_f):
            try:
                f.close()
            except OSError:  # the buffered tail could not be written: already reported in ``error``
                pass
        if summary is not None:
            try:
                self.write_json("summary.json", summary)
            except OSError as err:
                self.error = self.error or f"cannot write summary.json in {self.path}: {err.strerror or err}"
        self.closed = True

    def __enter__(self) -> "RunFolder":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_log_checked(path: str | Path) -> tuple[list[dict], bool]:
    """The rows of log.jsonl, and whether its last line was cut short (the process was killed mid-write, the
    disk filled): such a line is left out, the whole lines before it are kept."""
    rows = []
    with open(Path(path) / "log.jsonl") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                return rows, True
    return rows, False


def read_log(path: str | Path) -> list[dict]:
    return read_log_checked(path)[0]


def read_events(path: str | Path) -> list[dict]:
    p = Path(path) / "events.jsonl"
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def write_rows(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Benchmarks: DIR/results.json as a JSON list of rows."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([to_jsonable(r) for r in rows], indent=2) + "\n")
    return path


def peak_rss_mb(pid: int | None = None) -> float:
    """Peak resident set size (VmHWM) of a process, in MB, from /proc (Linux)."""
    status = Path(f"/proc/{pid or os.getpid()}/status")
    try:
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")
