import gc
import sys

from rtctl.runtime.tick import Clock, TickConfig, TickStats, run_loop


class FakeClock:
    """Virtual time: sleeping advances it exactly; each reading costs 1 µs (so spinning ends); work costs
    whatever the test says. The loop's rules are checked without depending on how busy the machine is."""

    def __init__(self):
        self.t = 0

    def now_ns(self):
        self.t += 1_000
        return self.t

    def sleep_s(self, s):
        self.t += int(s * 1e9)


def test_loop_runs_ticks_on_an_absolute_schedule():
    clock = FakeClock()
    seen = []
    stats = run_loop(TickConfig(rate_hz=200, pin_cpu="off"), lambda t: seen.append(t) or True, max_ticks=50,
                     clock=Clock(clock.now_ns, clock.sleep_s))
    assert len(seen) == 50 and len(stats.period_err_us) == 50
    sched = [t.scheduled_ns for t in seen]
    assert all(b - a == seen[0].period_ns for a, b in zip(sched, sched[1:]))  # absolute schedule
    assert all(t.start_ns >= t.scheduled_ns for t in seen)
    assert stats.misses == 0 and stats.skipped_slots == 0


def test_an_overrun_is_a_miss_and_skips_the_slots_it_covered():
    clock = FakeClock()
    period = 10_000_000  # 100 Hz

    def work(t):
        if t.index == 3:
            clock.t += int(2.5 * period)  # ends 2.5 periods after its start: a miss, one whole slot covered
        return True

    seen = []
    stats = run_loop(TickConfig(rate_hz=100, pin_cpu="off"), lambda t: seen.append(t) or work(t), max_ticks=8,
                     clock=Clock(clock.now_ns, clock.sleep_s))
    assert stats.misses == 1 and stats.skipped_slots == 1
    # the slot at +1 period was covered by the overrun and skipped; the one at +2 starts late, at once
    assert seen[4].scheduled_ns - seen[3].scheduled_ns == 2 * period and seen[4].start_ns >= seen[4].scheduled_ns
    assert stats.summary()["deadline_misses"] == 1


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
