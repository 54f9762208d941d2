"""The latest state of each neighbour with its age: what the vehicle shield and the policy read.

Ordering is per sender and message type: a message whose seq is not above the last accepted one of its type is
a replay or arrived out of order, and is dropped. Ages are in the receiver's clock (see rtctl.v2v.clock).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from rtctl.v2v.clock import ClockSync
from rtctl.v2v.config import Limits
from rtctl.v2v.schema import Message, Rejected, StateMsg


@dataclass(frozen=True, slots=True)
class VehicleState:
    pose: np.ndarray  # (3,) x, y, yaw
    vel: np.ndarray  # (2,)
    acc: np.ndarray  # (2,)
    intent: int

    def vector(self) -> np.ndarray:
        """(7,) x, y, yaw, vx, vy, ax, ay."""
        return np.concatenate([self.pose, self.vel, self.acc])


class Neighbour(NamedTuple):
    id: str
    state: VehicleState
    age_s: float  # receiver now - measurement time; the shield widens its margin by speed x age
    error_bound: float  # m, the sender's own bound at measurement time


class NeighbourTable:
    def __init__(self, limits: Limits, clock: ClockSync) -> None:
        self.limits = limits
        self.clock = clock
        self._max_age_ns = limits.max_age_s * 1e9  # read once: accept() runs per message
        self._max_future_ns = limits.max_future_s * 1e9
        self._last_seq: dict[tuple[str, type], int] = {}
        # id -> [message, t_meas in our clock, VehicleState built by the first snapshot after the update]
        self._latest: dict[str, list] = {}

    def accept(self, msg: Message, now_ns: int) -> None:
        """Take a validated message from a bound sender, or raise Rejected (old_seq, unsynced, stale, future).

        Only state messages are aged: an e-stop is obeyed however late it is, and ping/pong carry their own
        timing. Replays of every type are refused by seq. Straight-line code: it runs for every message.
        """
        sender = msg.id
        key = (sender, type(msg))
        last = self._last_seq.get(key)
        if last is not None and msg.seq <= last:
            raise Rejected("old_seq", f"{sender} seq {msg.seq} <= last accepted {last}")
        if key[1] is StateMsg:
            offset = self.clock.offset_ns(sender)
            if offset is None:
                raise Rejected("unsynced", f"no clock offset for {sender} yet")
            t_meas = msg.t_meas_ns + offset
            age_ns = now_ns - t_meas
            if age_ns > self._max_age_ns:
                raise Rejected("stale", f"{sender} age {age_ns / 1e9:.3f} s > {self.limits.max_age_s} s")
            if -age_ns > self._max_future_ns:
                raise Rejected("future", f"{sender} measured {-age_ns / 1e9:.3f} s in our future")
            self._latest[sender] = [msg, t_meas, None]
        self._last_seq[key] = msg.seq

    def forget(self, sender: str) -> None:
        """Drop a sender's state (e.g. it was removed from the trial); its seq history stays, so no replays."""
        self._latest.pop(sender, None)

    def __contains__(self, sender: str) -> bool:
        return sender in self._latest

    def __len__(self) -> int:
        return len(self._latest)

    def latest(self, sender: str) -> StateMsg | None:
        entry = self._latest.get(sender)
        return entry[0] if entry else None

    def age_s(self, sender: str, now_ns: int) -> float:
        entry = self._latest.get(sender)
        return (now_ns - entry[1]) / 1e9 if entry else float("inf")

    def snapshot(self, now_ns: int) -> list[Neighbour]:
        """Every sender heard from, sorted by id, with its age now; stale entries stay (the shield decides)."""
        out = []
        for sender in sorted(self._latest):
            entry = self._latest[sender]
            msg, t_meas, state = entry
            if state is None:
                state = VehicleState(np.array(msg.pose), np.array(msg.vel), np.array(msg.acc), msg.intent)
                for a in (state.pose, state.vel, state.acc):
                    a.flags.writeable = False  # shared by every snapshot until the next update
                entry[2] = state
            out.append(Neighbour(sender, state, (now_ns - t_meas) / 1e9, msg.error_bound))
        return out
