"""Run folders never lose evidence: rows and events on disk within one drain, summary.json replaced
atomically, a write error kept as one line instead of killing the writer, a torn last log line tolerated.
Drains are called directly (deterministic); the writer thread's period is a setting, not asserted."""
import json
import os

import pytest

from rtctl.report.runfolder import RunFolder, RunLogError, read_log_checked


def test_rows_and_events_reach_disk_at_each_drain_without_close(tmp_path):
    f = RunFolder(tmp_path / "run", "seed: 0\n", flush_every_s=3600)  # the thread stays asleep: we drain
    f.log({"tick": 0})
    f.event("push_start", tick=0)
    f._drain()
    assert json.loads((tmp_path / "run" / "log.jsonl").read_text()) == {"tick": 0}
    assert json.loads((tmp_path / "run" / "events.jsonl").read_text())["event"] == "push_start"
    f.write_partial({"stopped_by": "running (partial summary)", "ticks": 1})
    f._drain()
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["ticks"] == 1
    f.close({"stopped_by": "completed", "ticks": 1})
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["stopped_by"] == "completed"
    assert not list((tmp_path / "run").glob(".*.tmp"))  # the atomic write left no temp file
    assert len((tmp_path / "run" / "events.jsonl").read_text().splitlines()) == 1  # not written twice


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux) to emulate a full disk")
def test_a_full_disk_is_one_line_not_a_dead_writer(tmp_path):
    f = RunFolder(tmp_path / "run", "seed: 0\n", flush_every_s=3600)
    f._log = open("/dev/full", "w", buffering=1 << 16)  # every flush now fails with ENOSPC
    f.log({"tick": 0})
    f._drain()
    assert f.error is not None and "\n" not in f.error and str(tmp_path / "run") in f.error
    assert "No space left" in f.error
    f.log({"tick": 1})
    f._drain()  # nothing more is attempted, nothing raises
    f.close({"stopped_by": "RunLogError"})
    assert isinstance(RunLogError(f.error), OSError)


def test_a_torn_last_line_is_left_out_and_reported(tmp_path):
    (tmp_path / "log.jsonl").write_text('{"tick": 0}\n{"tick": 1}\n{"tick": 2, "comm')
    rows, cut = read_log_checked(tmp_path)
    assert [r["tick"] for r in rows] == [0, 1] and cut
    (tmp_path / "log.jsonl").write_text('{"tick": 0}\n')
    assert read_log_checked(tmp_path) == ([{"tick": 0}], False)
