"""A command under a fault drill: started, watched, signalled, and checked for what it left running.

Every process the command starts (Ray's GCS, raylet and agents, the policy worker, an emulator, trial cars)
is found by walking /proc's parent links while it runs, sampled every ``sample_s``; so the ones still alive
after it ended are known even once they were re-parented to init (Linux).
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

from rtctl.runtime.procfs import cmdline, descendants, same_process


class Watched:
    def __init__(self, cmd: Sequence[str], cwd: Optional[Path] = None, env: Optional[dict] = None,
                 preexec_fn: Optional[Callable[[], None]] = None, sample_s: float = 0.2) -> None:
        self.t_start_ns = time.monotonic_ns()
        self.proc = subprocess.Popen(list(cmd), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     preexec_fn=preexec_fn)
        self.seen: dict[int, str] = {}  # pid → start time (rtctl.runtime.procfs: a reused pid is not ours)
        self.sample_s = sample_s
        self.t_exit_ns: Optional[int] = None
        self.stdout = self.stderr = ""

    def sample(self) -> None:
        if self.proc.poll() is None:
            self.seen.update(descendants(self.proc.pid))

    def wait_until(self, ready: Callable[[], bool], timeout_s: float) -> bool:
        """Sample while waiting for ``ready()`` (or for the command to end); False on timeout or exit."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.sample()
            if ready():
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(self.sample_s)
        return False

    def send(self, sig: int) -> int:
        self.sample()
        t = time.monotonic_ns()
        os.kill(self.proc.pid, sig)
        return t

    def finish(self, timeout_s: float) -> int:
        """Wait for the command to end (killed after ``timeout_s``); its exit code (−N: signal N)."""
        deadline = time.monotonic() + timeout_s
        while self.proc.poll() is None and time.monotonic() < deadline:
            self.sample()
            time.sleep(self.sample_s / 4)
        if self.proc.poll() is None:
            self.proc.kill()
        self.stdout, self.stderr = self.proc.communicate(timeout=30)
        self.t_exit_ns = time.monotonic_ns()
        return self.proc.returncode

    def leftovers(self, grace_s: float = 10.0) -> list[str]:
        """The processes it started that are still alive ``grace_s`` after it ended (polled: returns as soon
        as none is left)."""
        deadline = time.monotonic() + grace_s
        while True:
            left = [p for p, start in self.seen.items() if same_process(p, start)]
            if not left or time.monotonic() >= deadline:
                return [f"{p} {cmdline(p)[:80]}" for p in sorted(left)]
            time.sleep(0.2)

    def kill_leftovers(self) -> None:
        for p, start in self.seen.items():
            if same_process(p, start):
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
