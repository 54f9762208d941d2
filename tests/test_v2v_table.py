"""Neighbour table (order, age, snapshot for the shield) and clock offsets (config, NTP-style estimate)."""
import numpy as np
import pytest

from rtctl.v2v.clock import ClockSync
from rtctl.v2v.config import ClockConfig, Limits
from rtctl.v2v.neighbours import NeighbourTable
from rtctl.v2v.schema import EStopMsg, PongMsg, Rejected, StateMsg

S = 1_000_000_000
LIM = Limits(max_age_s=0.5, max_future_s=0.05)


def state(seq, t_meas, sender="car1", x=1.0):
    return StateMsg(sender, seq, t_meas, t_meas, (x, 0.0, 0.0), (2.0, 0.0), (0.0, 0.0), 1, 0.1)


def rejected(table, msg, now):
    with pytest.raises(Rejected) as err:
        table.accept(msg, now)
    return err.value.reason


def test_latest_per_sender_and_replays_dropped():
    t = NeighbourTable(LIM, ClockSync(ClockConfig()))
    t.accept(state(5, 10 * S), 10 * S)
    t.accept(state(6, 10 * S, x=2.0), 10 * S)
    assert rejected(t, state(6, 10 * S, x=9.0), 10 * S) == "old_seq"  # replay of the same seq
    assert rejected(t, state(4, 10 * S, x=9.0), 10 * S) == "old_seq"  # out of order
    assert t.latest("car1").pose[0] == 2.0


def test_order_is_per_type_so_an_estop_does_not_block_states():
    t = NeighbourTable(LIM, ClockSync(ClockConfig()))
    t.accept(EStopMsg("car1", 9, 10 * S, "x"), 10 * S)
    t.accept(state(8, 10 * S), 10 * S)  # reordered against the estop, still the newest state
    assert rejected(t, EStopMsg("car1", 9, 10 * S, "x"), 10 * S) == "old_seq"


def test_stale_and_future_messages_dropped():
    t = NeighbourTable(LIM, ClockSync(ClockConfig()))
    assert rejected(t, state(1, 10 * S), 10 * S + S // 2 + 1) == "stale"
    assert rejected(t, state(2, 10 * S + S // 10), 10 * S) == "future"
    t.accept(state(3, 10 * S + S // 100), 10 * S)  # within max_future_s: clocks are never exact
    assert len(t) == 1


def test_snapshot_gives_age_and_error_bound_for_the_shield():
    t = NeighbourTable(LIM, ClockSync(ClockConfig()))
    t.accept(state(1, 10 * S, "car2", x=3.0), 10 * S + S // 10)
    t.accept(state(1, 10 * S, "car1"), 10 * S)
    snap = t.snapshot(11 * S)
    assert [n.id for n in snap] == ["car1", "car2"]
    ident, st, age, bound = snap[1]  # unpacks as (id, state arrays, age_s, error_bound)
    assert ident == "car2" and age == pytest.approx(1.0) and bound == 0.1
    np.testing.assert_array_equal(st.vector(), [3.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0])
    assert not st.pose.flags.writeable  # shared between snapshots
    assert t.snapshot(12 * S)[0].age_s == pytest.approx(2.0)  # stale entries stay, ageing: the shield decides


def test_configured_offset_shifts_ages():
    # peer clock runs 3 s behind ours: offset = local - peer = +3 s
    t = NeighbourTable(LIM, ClockSync(ClockConfig(source="realtime", offsets="config", offset_ns={"car1": 3 * S})))
    t.accept(state(1, 7 * S), 10 * S + S // 10)
    assert t.snapshot(10 * S + S // 5)[0].age_s == pytest.approx(0.2)


def test_estimated_offset_unsynced_until_first_pong_then_min_rtt_wins():
    clock = ClockSync(ClockConfig(source="realtime", offsets="estimate"), ("car1",))
    t = NeighbourTable(LIM, clock)
    assert rejected(t, state(1, 10 * S), 10 * S) == "unsynced"
    true_offset = 5 * S  # local - peer
    # exchange 1: slow, asymmetric (request 40 ms, reply 2 ms); exchange 2: fast, symmetric (1 ms each way)
    for t1, up, down in [(100 * S, 40_000_000, 2_000_000), (101 * S, 1_000_000, 1_000_000)]:
        t2 = t1 + up - true_offset
        t3 = t2 + 500_000
        t4 = t3 + true_offset + down
        clock.sent_ping(t1)
        assert clock.on_pong(PongMsg("car1", t1, t3, "me", t1, t2), "me", t4)
    assert clock.offset_ns("car1") == true_offset and clock.rtt_ns("car1") == 2_000_000
    assert not clock.on_pong(PongMsg("car1", 9, 9, "me", 12345, 9), "me", 10)  # answers no ping of ours
    assert not clock.on_pong(PongMsg("car1", 9, 9, "other", 101 * S, 9), "me", 10)  # for someone else
    t.accept(state(1, 10 * S - true_offset), 10 * S + S // 10)
    assert t.snapshot(10 * S + S // 10)[0].age_s == pytest.approx(0.1)


def test_impossible_sample_ignored():
    clock = ClockSync(ClockConfig(source="realtime", offsets="estimate"), ("car1",))
    assert not clock.add_sample("car1", 10, 50, 60, 15)  # rtt < 0: a clock stepped mid-exchange
    assert clock.offset_ns("car1") is None
