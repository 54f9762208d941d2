"""Clock offsets between hosts, so that a message's age is measured in the receiver's time.

age = receiver now - (sender t_meas + offset), offset = local clock - peer clock. On one host the offset is 0.
With chrony/PTP the config gives it (usually 0 on the realtime clock). Otherwise `ClockSync` estimates it over
the bus NTP-style: a ping carries t1 (requester's clock); the responder stamps t2 on receipt and t3 on its
pong; the requester stamps t4. rtt = (t4 - t1) - (t3 - t2) and offset = ((t1 - t2) + (t4 - t3)) / 2, whose
error is at most rtt / 2; of the last `window` samples the one with the smallest rtt wins (queueing only ever
adds delay, so the fastest exchange is the most symmetric one).
"""
from __future__ import annotations

import time
from collections import deque
from typing import Callable

from rtctl.v2v.config import ClockConfig
from rtctl.v2v.schema import PingMsg, PongMsg

MAX_OUTSTANDING = 64  # pings waiting for a pong; older ones are forgotten


def clock_for(cfg: ClockConfig) -> Callable[[], int]:
    return time.monotonic_ns if cfg.source == "monotonic" else time.time_ns


class ClockSync:
    """Per-peer offsets: fixed (same host, config) or estimated from ping/pong samples."""

    def __init__(self, cfg: ClockConfig, peers: tuple[str, ...] = ()) -> None:
        self.cfg = cfg
        self.estimating = cfg.offsets == "estimate"
        self._fixed = {} if cfg.offsets == "same_host" else dict(cfg.offset_ns)  # unless estimating
        self._samples: dict[str, deque[tuple[int, int]]] = {}
        for peer in peers:
            self.add_peer(peer)
        self._outstanding: deque[int] = deque(maxlen=MAX_OUTSTANDING)  # t1 of pings sent
        self._next_ping_ns = 0

    def add_peer(self, peer: str) -> None:
        self._samples.setdefault(peer, deque(maxlen=self.cfg.window))

    def offset_ns(self, peer: str) -> int | None:
        """local - peer in ns; None while an estimated offset has no sample yet."""
        if not self.estimating:
            return self._fixed.get(peer, 0)
        samples = self._samples.get(peer)
        return min(samples)[1] if samples else None

    def rtt_ns(self, peer: str) -> int | None:
        samples = self._samples.get(peer)
        return min(samples)[0] if samples else None

    def add_sample(self, peer: str, t1: int, t2: int, t3: int, t4: int) -> bool:
        rtt = (t4 - t1) - (t3 - t2)
        if rtt < 0 or peer not in self._samples:
            return False  # impossible timing: a peer's clock stepped mid-exchange
        self._samples[peer].append((rtt, ((t1 - t2) + (t4 - t3)) // 2))
        return True

    # -- the exchange; the node sends what these return -------------------------------------------------------
    def ping_due(self, now_ns: int) -> bool:
        if not self.estimating or now_ns < self._next_ping_ns:
            return False
        self._next_ping_ns = now_ns + int(self.cfg.ping_interval_s * 1e9)
        return True

    def sent_ping(self, t1: int) -> None:
        self._outstanding.append(t1)

    def on_ping(self, ping: PingMsg, me: str, t_rx_ns: int) -> tuple[str, int, int] | None:
        """A ping for us -> (requester, t1, t2) to put in a pong; pings for others -> None."""
        if ping.to != me:
            return None
        return ping.id, ping.t_send_ns, t_rx_ns

    def on_pong(self, pong: PongMsg, me: str, t4: int) -> bool:
        if pong.to != me or pong.t_ping_ns not in self._outstanding:
            return False
        return self.add_sample(pong.id, pong.t_ping_ns, pong.t_rx_ns, pong.t_send_ns, t4)
