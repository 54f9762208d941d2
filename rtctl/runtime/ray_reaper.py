"""Ends a run's local Ray cluster when the run's process dies without shutting it down (SIGKILL, OOM kill).

Ray ties its GCS and raylet to the process that started them (PR_SET_PDEATHSIG), but the raylet's agents
(ray::DashboardAgent, ray::RuntimeEnvAgent) were measured still alive more than 60 s after a SIGKILL of
`rtctl run`. `start(parent_pid)` (rtctl.runtime.ray_start, only for a cluster the run started itself) launches this
module as a small process that holds the read end of a pipe whose write end only the run holds: while the
pipe is open it records, every ``SAMPLE_S``, the processes below the run (pid and start time, so a reused pid
is never killed); at EOF — the run is gone, however it ended — it SIGKILLs the recorded ones still alive,
and exits. It ignores SIGINT (a Ctrl-C on the terminal reaches the whole process group; the run handles it).
"""
from __future__ import annotations

import os
import select
import signal
import subprocess
import sys

from rtctl.runtime.procfs import descendants, same_process

SAMPLE_S = 1.0


def watch(parent: int, fd: int) -> int:
    seen: dict[int, str] = {}
    while True:
        seen.update(descendants(parent))
        seen.pop(os.getpid(), None)
        ready, _, _ = select.select([fd], [], [], SAMPLE_S)
        if ready and not os.read(fd, 4096):  # EOF: the run's process is gone
            break
    killed = 0
    for pid, start in seen.items():
        if same_process(pid, start):
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except OSError:
                pass
    return killed


def start(parent_pid: int) -> subprocess.Popen:
    """Launch the reaper for ``parent_pid`` (the calling process): it ends what the caller leaves behind."""
    return subprocess.Popen([sys.executable, "-m", "rtctl.runtime.ray_reaper", str(parent_pid)], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True,
                            start_new_session=True)  # its own session: a terminal's Ctrl-C does not reach it


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watch(int(sys.argv[1]), sys.stdin.fileno())
