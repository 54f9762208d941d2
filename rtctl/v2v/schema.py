"""The V2V message schema, version 1 (documented for other implementers in docs/v2v_schema.md).

A message is one msgpack map with exactly the keys of its type. `validate` turns an unpacked object into a
message dataclass or raises `Rejected(reason)`, so every drop is counted under one reason name. The checks are
plain Python on purpose: they run on every received message and cost a few microseconds.
"""
from __future__ import annotations

import math
from typing import NamedTuple

from rtctl.v2v.config import ID_PATTERN, Limits

VERSION = 1
MAX_NS = 2**63 - 1
MAX_SEQ = 2**63 - 1
MAX_YAW_RAD = 2.0 * math.pi
MAX_REASON_LEN = 128

# Why a received message was dropped; receivers count each.
REASONS = (
    "oversized",  # more bytes than limits.max_message_bytes
    "malformed",  # not msgpack, trailing bytes, a limit of the unpacker hit, or not a map
    "version",  # "v" is not a version this receiver reads
    "invalid",  # unknown type, missing or extra keys, wrong value types or shapes
    "nonfinite",  # NaN or infinity in a float
    "out_of_range",  # a value outside the limits
    "unknown_sender",  # the id is not a configured peer
    "spoofed",  # the id is a peer, but not the one whose key (socket) it came from
    "old_seq",  # seq not above the last accepted from this sender: replayed or out of order
    "stale",  # older than limits.max_age_s on arrival
    "future",  # measured later than our clock allows (clock fault)
    "unsynced",  # no clock offset for the sender yet (clock.offsets: estimate)
    "injected_drop",  # dropped on purpose by the delay/drop injector
)


class Rejected(Exception):
    """A message failed a check; `reason` is one of REASONS."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class StateMsg(NamedTuple):  # NamedTuples: immutable, and 5x cheaper to build than frozen dataclasses
    id: str
    seq: int
    t_send_ns: int
    t_meas_ns: int
    pose: tuple[float, float, float]  # x m, y m, yaw rad
    vel: tuple[float, float]  # vx, vy m/s (world frame)
    acc: tuple[float, float]  # ax, ay m/s²
    intent: int  # behaviour index (keep lane, change left/right, accel/brake bins, emergency stop)
    error_bound: float  # m, bound on the position error at t_meas


class EStopMsg(NamedTuple):
    id: str
    seq: int
    t_send_ns: int
    reason: str


class PingMsg(NamedTuple):
    id: str
    seq: int
    t_send_ns: int
    to: str


class PongMsg(NamedTuple):
    id: str
    seq: int
    t_send_ns: int  # t3: pong sent, responder's clock
    to: str
    t_ping_ns: int  # t1: the ping's t_send_ns, echoed (requester's clock)
    t_rx_ns: int  # t2: ping received, responder's clock


Message = StateMsg | EStopMsg | PingMsg | PongMsg

COMMON_KEYS = ("v", "type", "id", "seq", "t_send_ns")
KEYS = {
    "state": frozenset(COMMON_KEYS + ("t_meas_ns", "pose", "vel", "acc", "intent", "error_bound")),
    "estop": frozenset(COMMON_KEYS + ("reason",)),
    "ping": frozenset(COMMON_KEYS + ("to",)),
    "pong": frozenset(COMMON_KEYS + ("to", "t_ping_ns", "t_rx_ns")),
}
STATE_KEYS = KEYS["state"]
TYPES = {StateMsg: "state", EStopMsg: "estop", PingMsg: "ping", PongMsg: "pong"}


def _int(obj: dict, key: str, hi: int) -> int:
    x = obj[key]
    if type(x) is not int:  # bool is an int subclass: excluded on purpose
        raise Rejected("invalid", f"{key} must be an integer")
    if not 0 <= x <= hi:
        raise Rejected("out_of_range", f"{key}={x} outside [0, {hi}]")
    return x


def _number_rejected(key: str, x: object, bound: float) -> Rejected | None:
    t = type(x)
    if t is not float and t is not int:
        return Rejected("invalid", f"{key} must hold numbers")
    if not -bound <= x <= bound:  # False for NaN too
        return Rejected("out_of_range" if math.isfinite(x) else "nonfinite", f"{key} value {x!r} not in ±{bound:g}")
    return None


def _vector(obj: dict, key: str, bounds: tuple[float, ...]) -> tuple[float, ...]:
    """A list of len(bounds) finite numbers, each within ±bound; one loop, since it runs per message."""
    xs = obj[key]
    if type(xs) is not list or len(xs) != len(bounds):
        raise Rejected("invalid", f"{key} must be a list of {len(bounds)} numbers")
    all_float = True
    for x, b in zip(xs, bounds):
        if type(x) is not float or not -b <= x <= b:
            err = _number_rejected(key, x, b)
            if err is not None:
                raise err
            all_float = False  # an int in range
    return tuple(xs) if all_float else tuple(map(float, xs))


def _str(obj: dict, key: str, max_len: int) -> str:
    s = obj[key]
    if type(s) is not str or len(s) > max_len:
        raise Rejected("invalid", f"{key} must be a string of at most {max_len} characters")
    return s


def _id(obj: dict, key: str) -> str:
    s = obj[key]
    if type(s) is not str or not ID_PATTERN.fullmatch(s):
        raise Rejected("invalid", f"{key} must be an id of 1-32 characters A-Z a-z 0-9 _ -")
    return s


def state_ok(o: dict, limits: Limits) -> bool:
    """The common case in one expression: a state map whose every value has its exact type and is in range.

    Only a shortcut: each check here is also made by `validate`'s detailed path, which runs whenever this
    says False (and names the reason). Chained comparisons are False for NaN, so finiteness is covered.
    """
    p, v, a = o["pose"], o["vel"], o["acc"]
    if not (type(p) is list and len(p) == 3 and type(v) is list and len(v) == 2 and type(a) is list
            and len(a) == 2):
        return False
    x, y, yaw = p
    vx, vy = v
    ax, ay = a
    seq, ts, tm, it, eb, sid = o["seq"], o["t_send_ns"], o["t_meas_ns"], o["intent"], o["error_bound"], o["id"]
    lp, lv, la = limits.max_abs_position_m, limits.max_speed_mps, limits.max_accel_mps2
    return (type(x) is float and type(y) is float and type(yaw) is float and type(vx) is float
            and type(vy) is float and type(ax) is float and type(ay) is float and type(eb) is float
            and type(seq) is int and type(ts) is int and type(tm) is int and type(it) is int and type(sid) is str
            and type(o["v"]) is int and o["v"] == VERSION and o["type"] == "state"
            and -lp <= x <= lp and -lp <= y <= lp and -MAX_YAW_RAD <= yaw <= MAX_YAW_RAD
            and -lv <= vx <= lv and -lv <= vy <= lv and -la <= ax <= la and -la <= ay <= la
            and 0.0 <= eb <= limits.max_error_bound_m and 0 <= seq <= MAX_SEQ and 0 <= tm <= ts <= MAX_NS
            and 0 <= it <= limits.max_intent and ID_PATTERN.fullmatch(sid) is not None)


def validate(obj: object, limits: Limits) -> Message:
    """Unpacked object -> message, or raise Rejected. Checks type, keys, shapes, finiteness and ranges."""
    if type(obj) is dict and obj.keys() == STATE_KEYS and state_ok(obj, limits):
        o = obj
        return StateMsg(o["id"], o["seq"], o["t_send_ns"], o["t_meas_ns"], tuple(o["pose"]), tuple(o["vel"]),
                        tuple(o["acc"]), o["intent"], o["error_bound"])
    if type(obj) is not dict:
        raise Rejected("malformed", "top level is not a map")
    if obj.get("v") != VERSION or type(obj.get("v")) is not int:
        raise Rejected("version", f"v={obj.get('v')!r}, this receiver reads v={VERSION}")
    kind = obj.get("type")
    keys = KEYS.get(kind) if type(kind) is str else None
    if keys is None:
        raise Rejected("invalid", f"unknown type {kind!r}")
    if obj.keys() != keys:
        raise Rejected("invalid", f"{kind} keys differ: missing {sorted(keys - obj.keys())}, "
                                  f"extra {sorted(map(repr, obj.keys() - keys))}")
    sender = _id(obj, "id")
    seq = _int(obj, "seq", MAX_SEQ)
    t_send = _int(obj, "t_send_ns", MAX_NS)
    if kind == "state":
        t_meas = _int(obj, "t_meas_ns", MAX_NS)
        if t_meas > t_send:
            raise Rejected("out_of_range", "t_meas_ns after t_send_ns")
        p, v, a = limits.max_abs_position_m, limits.max_speed_mps, limits.max_accel_mps2
        intent = _int(obj, "intent", limits.max_intent)
        error_bound = obj["error_bound"]
        if type(error_bound) is not float or not 0.0 <= error_bound <= limits.max_error_bound_m:
            err = _number_rejected("error_bound", error_bound, limits.max_error_bound_m)
            if err is not None:
                raise err
            if error_bound < 0:
                raise Rejected("out_of_range", "error_bound < 0")
        return StateMsg(sender, seq, t_send, t_meas, _vector(obj, "pose", (p, p, MAX_YAW_RAD)),
                        _vector(obj, "vel", (v, v)), _vector(obj, "acc", (a, a)), intent, float(error_bound))
    if kind == "estop":
        return EStopMsg(sender, seq, t_send, _str(obj, "reason", MAX_REASON_LEN))
    if kind == "ping":
        return PingMsg(sender, seq, t_send, _id(obj, "to"))
    return PongMsg(sender, seq, t_send, _id(obj, "to"), _int(obj, "t_ping_ns", MAX_NS), _int(obj, "t_rx_ns", MAX_NS))


def to_wire(msg: Message) -> dict:
    """Message -> the map that goes on the wire (floats stay floats, vectors become lists)."""
    if type(msg) is StateMsg:  # the per-tick message: spelled out, 4x faster than the loop below
        return {"v": VERSION, "type": "state", "id": msg.id, "seq": msg.seq, "t_send_ns": msg.t_send_ns,
                "t_meas_ns": msg.t_meas_ns, "pose": list(msg.pose), "vel": list(msg.vel), "acc": list(msg.acc),
                "intent": msg.intent, "error_bound": msg.error_bound}
    d = {"v": VERSION, "type": TYPES[type(msg)]}
    for name, x in zip(msg._fields, msg):
        d[name] = list(x) if type(x) is tuple else x
    return d
