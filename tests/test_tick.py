import gc
import sys
import time

from rtctl.tick import TickConfig, TickStats, run_loop


def test_loop_runs_ticks_on_schedule():
    seen = []
    stats = run_loop(TickConfig(rate_hz=200), lambda t: seen.append(t) or True, max_ticks=50)
    assert len(seen) == 50 and len(stats.period_err_us) == 50
    sched = [t.scheduled_ns for t in seen]
    assert all(b - a == seen[0].period_ns for a, b in zip(sched, sched[1:]))  # absolute schedule
    assert all(t.start_ns >= t.scheduled_ns for t in seen)


def test_deadline_misses_are_counted_and_slots_skipped():
    period = 1 / 100

    def work(t):
        if t.index == 3:
            time.sleep(period * 2.5)  # ends past the next scheduled start: a miss, and one slot skipped
        return True

    stats = run_loop(TickConfig(rate_hz=100), work, max_ticks=8)
    assert stats.misses >= 1 and stats.skipped_slots >= 1
    assert stats.summary()["deadline_misses"] == stats.misses


def test_work_can_stop_the_loop_and_exceptions_keep_stats():
    stats = run_loop(TickConfig(rate_hz=100), lambda t: t.index < 4, max_ticks=100)
    assert len(stats.period_err_us) == 5
    kept = TickStats(100)
    try:
        run_loop(TickConfig(rate_hz=100), lambda t: 1 / (t.index - 2), max_ticks=10, stats=kept)
    except ZeroDivisionError:
        pass
    assert len(kept.period_err_us) == 2


def test_measures_are_undone_after_the_loop():
    before = (gc.isenabled(), sys.getswitchinterval())
    run_loop(TickConfig(rate_hz=100, gc_pause=True, switch_interval_us=200), lambda t: True, max_ticks=3)
    assert (gc.isenabled(), sys.getswitchinterval()) == before
