"""`EmulatorProcess`: the Feetech bus emulator (`rtctl.drivers.emulators.feetech`) as a child process, what
`rtctl deploy` and the driver tests talk to; a separate process, as a real bus is separate hardware."""
from __future__ import annotations

import json
import os
import sys
from typing import Iterable, Optional, Union


class EmulatorProcess:
    """``python -m rtctl.drivers.emulators.feetech --stdin-control …``: the host's GIL and busy-waiting SDK
    cannot delay its answers. `command()` sends one `PtyEmulator.control` line and returns its JSON reply.

    ``goal_log``: where it logs the goals it receives (``--goal-log``): a path, False for no log, or True
    (default) for a temporary file, removed when this process exits unless `keep_goal_log()` moved it (a run
    folder cannot hold it before the run starts: `RunFolder` wants an empty folder)."""

    def __init__(self, calibration: Optional[str] = None, start_present: Optional[list[int]] = None,
                 tau_s: float = 0.05, faults: Iterable[str] = (), goal_log: Union[str, bool] = True) -> None:
        import atexit
        import subprocess
        import tempfile

        cmd = [sys.executable, "-m", "rtctl.drivers.emulators.feetech", "--tau", str(tau_s), "--stdin-control"]
        self.goal_log_path: Optional[str] = None
        self._temp_log = goal_log is True
        if goal_log is True:
            fd, self.goal_log_path = tempfile.mkstemp(prefix="rtctl-feetech-goals-", suffix=".jsonl")
            os.close(fd)
            atexit.register(self._drop_temp_log)
        elif goal_log:
            self.goal_log_path = str(goal_log)
        if self.goal_log_path is not None:
            cmd += ["--goal-log", self.goal_log_path]
        if calibration is not None:
            cmd += ["--calibration", str(calibration)]
        if start_present is not None:
            cmd += ["--start-present", ",".join(map(str, start_present))]
        for f in faults:
            cmd += ["--fault", f]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("PTY "):
            err = self.proc.communicate(timeout=5)[1]
            raise RuntimeError(f"the Feetech emulator did not start: {line or err.strip()}")
        self.path = line[4:]
        self.counts: Optional[dict] = None

    def command(self, line: str) -> dict:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def stop(self) -> None:
        """Close its stdin (it exits on EOF) and keep its final packet counts."""
        if self.proc.returncode is not None:
            return
        try:
            out, _ = self.proc.communicate(timeout=5)
            last = [ln for ln in out.splitlines() if ln.startswith('{"counts"')]
            self.counts = json.loads(last[-1])["counts"] if last else None
        except Exception:  # never leave it behind
            self.proc.kill()
            self.proc.wait()

    def keep_goal_log(self, dest: Union[str, "os.PathLike[str]"]) -> Optional[str]:
        """Move the goal log to ``dest`` (call after `stop()`); returns the new path, None without a log."""
        import shutil

        if self.goal_log_path is None or not os.path.exists(self.goal_log_path):
            return None
        self.goal_log_path = str(shutil.move(self.goal_log_path, dest))
        self._temp_log = False
        return self.goal_log_path

    def _drop_temp_log(self) -> None:
        if self._temp_log and self.goal_log_path and os.path.exists(self.goal_log_path):
            os.remove(self.goal_log_path)
