"""Fuzz a receiver over a real loopback socket: random and mutated frames never crash it, and it accepts
exactly the frames an independent reference accepts (so nothing invalid reaches the neighbour table).
`rtctl bench v2v` runs the same harness with 100k frames."""
import msgpack

from rtctl.v2v.config import Limits
from rtctl.v2v.fuzz import SENDER, MessageFuzzer, ReferenceReceiver, run_fuzz
from rtctl.v2v.schema import REASONS


def test_fifty_thousand_frames_over_the_socket():
    r = run_fuzz(50_000, seed=11)
    assert r["received"] == 50_000  # every frame was handled (and counted), none crashed the receiver
    assert r["mismatches"] == []  # accepted exactly what the reference accepted, in order
    assert r["table_ok"] and r["table_entries"] == 1
    assert r["accepted"] > 5_000  # valid traffic kept flowing between the hostile frames
    assert set(r["drops"]) <= set(REASONS)
    assert {"malformed", "oversized", "invalid", "nonfinite", "out_of_range", "version", "spoofed",
            "unknown_sender", "old_seq", "stale", "future"} <= set(r["drops"])


def test_reference_agrees_on_plain_cases():
    now = 10**12
    ref = ReferenceReceiver(SENDER, Limits())
    fz = MessageFuzzer(0, Limits(), lambda: now)
    good = fz.valid()
    assert ref.offer(msgpack.packb(good), now) == (good["type"], good["seq"])
    assert ref.offer(msgpack.packb(good), now) is None  # replay
    assert ref.offer(msgpack.packb({**fz.valid(), "id": "car1"}), now) is None
