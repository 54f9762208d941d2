"""Fuzzing a receiver: random and mutated messages, a reference receiver to judge them, and a socket harness.

`MessageFuzzer` mixes valid messages with byte-level damage (flips, cuts, splices), field-level damage (wrong
types, NaN/inf, out of range, missing/extra keys, wrong id, old seq, stale or future stamps), random msgpack
values, ext types and oversized frames. `ReferenceReceiver` decides acceptance from the documented rules
(docs/v2v_schema.md) in its own code, not the schema module's, so the fuzz run is a differential test: the node
must accept exactly the messages the reference accepts, in order, and nothing else reaches its table.
"""
from __future__ import annotations

import math
import random
import re
import time
from typing import Any, Callable

import msgpack
import zmq

from rtctl.v2v.config import Limits, V2VConfig
from rtctl.v2v.node import V2VNode
from rtctl.v2v.schema import TYPES as TYPE_NAMES
from rtctl.v2v.transport import endpoint_of

SENDER = "car0"
ID_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
STATE_KEYS = {"v", "type", "id", "seq", "t_send_ns", "t_meas_ns", "pose", "vel", "acc", "intent", "error_bound"}
ESTOP_KEYS = {"v", "type", "id", "seq", "t_send_ns", "reason"}
NASTY = [None, True, False, 0, -1, 1, 2**63, 2**64 - 1, -2**63, 1.5, -0.0, float("nan"), float("inf"),
         float("-inf"), 1e308, -1e308, 5e-324, "", "x" * 40, "car0\n", "é", b"", [], [1.0], [1.0] * 9, {}, {"a": 1},
         [[1.0, 2.0, 3.0]], [float("nan")] * 3]
MAP_KEYS = ["v", "id", "seq", "type", "pose", "", 0, 1, -1, None, True, 1.5, b"k", "x" * 40]


class ReferenceReceiver:
    """Independent statement of the acceptance rules for messages arriving on `peer`'s socket."""

    def __init__(self, peer: str, limits: Limits) -> None:
        self.peer, self.limits = peer, limits
        self.last_seq: dict[tuple[str, str], int] = {}

    def offer(self, data: bytes, now_ns: int) -> tuple[str, int] | None:
        """(type, seq) if the message must be accepted, else None; updates the per-sender order."""
        if len(data) > self.limits.max_message_bytes:
            return None
        try:
            m = msgpack.unpackb(data, raw=False, strict_map_key=False)
        except Exception:
            return None
        if not isinstance(m, dict) or not self._fields_ok(m, now_ns):
            return None
        key = (m["id"], m["type"])
        if key in self.last_seq and m["seq"] <= self.last_seq[key]:
            return None
        self.last_seq[key] = m["seq"]
        return m["type"], m["seq"]

    def _fields_ok(self, m: dict, now_ns: int) -> bool:
        lim = self.limits

        def integer(x: Any, hi: int) -> bool:
            return isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= hi

        def number(x: Any, bound: float) -> bool:
            return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and abs(x) <= bound

        def vec(x: Any, bounds: list[float]) -> bool:
            return isinstance(x, list) and len(x) == len(bounds) and all(map(number, x, bounds))

        kind = m.get("type")
        keys = STATE_KEYS if kind == "state" else ESTOP_KEYS if kind == "estop" else None
        if keys is None or set(m) != keys or m["v"] != 1 or not integer(m["v"], 1):
            return False
        if not (isinstance(m["id"], str) and ID_RE.fullmatch(m["id"]) and m["id"] == self.peer):
            return False
        if not (integer(m["seq"], 2**63 - 1) and integer(m["t_send_ns"], 2**63 - 1)):
            return False
        if kind == "estop":
            return isinstance(m["reason"], str) and len(m["reason"]) <= 128
        p, v, a = lim.max_abs_position_m, lim.max_speed_mps, lim.max_accel_mps2
        return (integer(m["t_meas_ns"], m["t_send_ns"]) and integer(m["intent"], lim.max_intent)
                and number(m["error_bound"], lim.max_error_bound_m) and m["error_bound"] >= 0
                and vec(m["pose"], [p, p, 2 * math.pi]) and vec(m["vel"], [v, v]) and vec(m["acc"], [a, a])
                and -lim.max_future_s * 1e9 <= now_ns - m["t_meas_ns"] <= lim.max_age_s * 1e9)


class MessageFuzzer:
    """Endless stream of hostile and valid frames claiming to come from SENDER."""

    def __init__(self, seed: int, limits: Limits, now_ns: Callable[[], int]) -> None:
        self.rng = random.Random(seed)
        self.limits, self.now_ns = limits, now_ns
        self.seq = 1000

    def valid(self) -> dict:
        r, lim = self.rng, self.limits
        self.seq += r.choice((1, 1, 1, 2, 7))
        t_meas = self.now_ns() - r.randrange(0, int(0.5 * lim.max_age_s * 1e9))
        if r.random() < 0.05:
            return {"v": 1, "type": "estop", "id": SENDER, "seq": self.seq, "t_send_ns": t_meas,
                    "reason": r.choice(["operator", "fault", ""])}
        u = lambda b: r.uniform(-b, b)  # noqa: E731
        return {"v": 1, "type": "state", "id": SENDER, "seq": self.seq, "t_send_ns": t_meas + r.randrange(10**6),
                "t_meas_ns": t_meas, "pose": [u(100.0), u(100.0), u(math.pi)],
                "vel": [u(lim.max_speed_mps), u(3.0)], "acc": [u(5.0), u(lim.max_accel_mps2)],
                "intent": r.randrange(lim.max_intent + 1), "error_bound": r.uniform(0, 1.0)}

    def random_value(self, depth: int = 0) -> Any:
        r = self.rng
        pick = r.random()
        if depth < 3 and pick < 0.15:
            return [self.random_value(depth + 1) for _ in range(r.randrange(12))]
        if depth < 3 and pick < 0.3:
            return {r.choice(MAP_KEYS): self.random_value(depth + 1) for _ in range(r.randrange(12))}
        if pick < 0.4:
            return r.randbytes(r.randrange(20)).decode("latin-1")
        if pick < 0.5:
            return r.uniform(-1e6, 1e6)
        if pick < 0.6:  # never a large in-range int: as a seq it would end the run's acceptances
            return r.choice((r.randrange(-2**63, 0), r.randrange(2**63, 2**64), r.randrange(-1000, 1000)))
        return r.choice(NASTY)

    def mutate_fields(self, m: dict) -> dict:
        r = self.rng
        for _ in range(r.choice((1, 1, 1, 2, 3))):
            key = r.choice(list(m))
            op = r.random()
            if op < 0.35:
                m[key] = r.choice(NASTY) if r.random() < 0.6 else self.random_value()
            elif op < 0.45:
                del m[key]
            elif op < 0.5:
                m[r.choice(["extra", "V", "pose ", 7])] = 1
            elif op < 0.6 and key in ("pose", "vel", "acc"):
                vec = list(m[key]) if isinstance(m[key], list) and m[key] else [0.0]
                vec[r.randrange(len(vec))] = r.choice([float("nan"), float("inf"), 1e9, -1e9, "1", None, True])
                m[key] = vec
            elif op < 0.7:
                m["id"] = r.choice(["car1", "rx", "ghost", "car0 ", "", "c" * 33, 0])
            elif op < 0.8:
                m["seq"] = r.choice([0, 1, self.seq - 1, self.seq - 100, -5])  # replays and junk
            elif op < 0.9 and "t_meas_ns" in m and isinstance(m.get("t_send_ns"), int):
                shift = r.choice([-1, 1]) * int(r.choice([0.06, 2.0, 1e3]) * self.limits.max_age_s * 1e9)
                m["t_meas_ns"] = max(0, self.now_ns() + shift)
                m["t_send_ns"] = max(m["t_meas_ns"], m["t_send_ns"])
            else:
                m[r.choice(["v", "type"])] = r.choice([0, 2, "1", 1.0, True, "state", "estop", "ping", "STATE"])
        return m

    def mutate_bytes(self, data: bytes) -> bytes:
        r = self.rng
        b = bytearray(data)
        op = r.random()
        if op < 0.4:
            for _ in range(r.randrange(1, 6)):
                b[r.randrange(len(b))] = r.randrange(256)
        elif op < 0.6:
            del b[r.randrange(len(b)):]
        elif op < 0.8:
            i = r.randrange(len(b))
            b[i:i] = r.randbytes(r.randrange(1, 16))
        else:
            b += data[: r.randrange(len(data))]
        return bytes(b)

    def frame(self) -> bytes:
        r = self.rng
        pick = r.random()
        if pick < 0.3:
            return msgpack.packb(self.valid())
        if pick < 0.6:
            return msgpack.packb(self.mutate_fields(self.valid()), use_bin_type=True)
        if pick < 0.8:
            return self.mutate_bytes(msgpack.packb(self.valid()))
        if pick < 0.88:
            return msgpack.packb(self.random_value(), use_bin_type=True)
        if pick < 0.93:
            return r.randbytes(r.randrange(0, 300))
        if pick < 0.97:
            m = self.valid()
            m[r.choice(["reason", "pad"])] = "x" * r.randrange(self.limits.max_message_bytes, 20000)
            return msgpack.packb(m)
        ext = msgpack.ExtType(r.randrange(128), r.randbytes(r.randrange(8))) if r.random() < 0.7 else \
            msgpack.Timestamp(r.randrange(2**32), r.randrange(10**9))  # the one predefined (negative) ext code
        m = self.valid()
        m[r.choice(list(m))] = ext
        return msgpack.packb(m)


def run_fuzz(n: int, seed: int = 0, progress: Callable[[int], None] | None = None) -> dict:
    """Throw n frames at a receiver over a real tcp loopback PUB/SUB; return counts and every disagreement.

    The receiver's clock is frozen, so the reference judges ages at exactly the receiver's `now`. The sender is
    an XPUB, which reports the receiver's subscription: nothing is sent before it is live, so nothing is lost.
    """
    now = time.monotonic_ns()
    limits = Limits()
    fuzzer = MessageFuzzer(seed, limits, lambda: now)
    ref = ReferenceReceiver(SENDER, limits)
    ctx = zmq.Context()
    pub = ctx.socket(zmq.XPUB)
    node = None
    try:
        pub.setsockopt(zmq.LINGER, 0)
        pub.setsockopt(zmq.SNDHWM, 0)  # unbounded: the harness must lose nothing
        pub.bind("tcp://127.0.0.1:*")
        node = V2VNode(V2VConfig(id="rx", peers={SENDER: endpoint_of(pub), "car1": "tcp://127.0.0.1:9"},
                                 limits=limits), clock_ns=lambda: now)
        if not pub.poll(10000):
            raise TimeoutError("fuzz receiver never subscribed")
        pub.recv()
        expected: list[tuple[str, int]] = []
        got: list[tuple[str, int]] = []
        t0 = time.perf_counter()
        sent = 0
        while sent < n:
            for _ in range(min(500, n - sent)):
                data = fuzzer.frame()
                pub.send(data)
                sent += 1
                verdict = ref.offer(data, now)
                if verdict is not None:
                    expected.append(verdict)
                    fuzzer.seq = max(fuzzer.seq, verdict[1])  # a mutated seq that got in moves the sender on
            _drain(node, sent, got)
            if progress:
                progress(sent)
        elapsed = time.perf_counter() - t0
        return {"frames": n, "received": node.received, "accepted": len(got), "expected_accepted": len(expected),
                "mismatches": _mismatches(expected, got), "table_entries": len(node.table),
                "table_ok": _table_ok(node, ref, now), "drops": dict(node.drops), "seconds": elapsed,
                "us_per_frame": elapsed / max(n, 1) * 1e6}
    finally:
        if node is not None:
            node.close()
        pub.close(linger=0)
        ctx.term()


def _drain(node: V2VNode, sent: int, got: list, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while node.received < sent:
        if time.monotonic() > deadline:
            raise TimeoutError(f"receiver got {node.received} of {sent} frames")
        got.extend((TYPE_NAMES[type(m)], m.seq) for m in node.poll(50))


def _mismatches(expected: list, got: list, keep: int = 10) -> list:
    out = [(i, e, g) for i, (e, g) in enumerate(zip(expected, got)) if e != g][:keep]
    if len(expected) != len(got) and len(out) < keep:
        out.append((min(len(expected), len(got)), "length", (len(expected), len(got))))
    return out


def _table_ok(node: V2VNode, ref: ReferenceReceiver, now_ns: int) -> bool:
    """The table holds only SENDER, and its entry is the last state message the reference accepted."""
    entries = node.snapshot(now_ns)
    want = ref.last_seq.get((SENDER, "state"))
    if want is None:
        return not entries
    latest = node.table.latest(SENDER)
    return [e.id for e in entries] == [SENDER] and latest is not None and latest.seq == want
