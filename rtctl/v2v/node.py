"""One car's end of the V2V bus: publish own state, receive, check and keep the latest of each neighbour.

Owned by one thread (ZeroMQ sockets are not thread-safe); `poll(0)` never blocks, so a control loop may call it
each tick, or a thread may call `poll(timeout_ms)` in a loop and hand snapshots on.

Receive path per message: size and msgpack limits -> schema validation -> id bound to the socket's peer ->
(delay/drop injection) -> per-sender order and age -> table. Every drop is counted under its reason.
"""
from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Callable, Sequence

import zmq

from rtctl.v2v.clock import ClockSync, clock_for
from rtctl.v2v.codec import decode, encode
from rtctl.v2v.config import V2VConfig, check_endpoint, check_id
from rtctl.v2v.inject import DelayInjector, TimedDelayQueue
from rtctl.v2v.keys import CarKeys, load_keys
from rtctl.v2v.neighbours import Neighbour, NeighbourTable
from rtctl.v2v.schema import EStopMsg, Message, PingMsg, PongMsg, Rejected, StateMsg
from rtctl.v2v.transport import endpoint_of, pub_socket, start_authenticator, sub_socket

MAX_PER_POLL = 10000  # messages handled in one poll, so a flood cannot hold the caller forever


class V2VNode:
    def __init__(self, cfg: V2VConfig, clock_ns: Callable[[], int] | None = None) -> None:
        self.cfg = cfg
        self.id = cfg.id
        self.limits = cfg.limits
        self.now_ns = clock_ns or clock_for(cfg.clock)
        self.peers: dict[str, str] = {}
        self._known = {self.id}
        self.clock = ClockSync(cfg.clock)
        self.table = NeighbourTable(cfg.limits, self.clock)
        self.delay = TimedDelayQueue(DelayInjector(cfg.injection)) if cfg.injection.kind != "none" or \
            cfg.injection.drop_p > 0 else None
        self.drops: Counter[str] = Counter()
        self.drops_by_peer: Counter[tuple[str, str]] = Counter()
        self.received = 0
        self.estop: EStopMsg | None = None  # latched: the first e-stop heard stays until `clear_estop`
        # seq starts at the wall clock in µs, so a restarted car continues above what its peers last accepted
        self._seq = time.time_ns() // 1000

        self.ctx = zmq.Context()
        self.auth = None
        self.keys: CarKeys | None = None
        self._subs: dict[zmq.Socket, str] = {}
        self.poller = zmq.Poller()
        try:
            if cfg.keys_dir is not None:
                self.keys = load_keys(Path(cfg.keys_dir), self.id)
                self.auth = start_authenticator(self.ctx, self.keys)
            self.pub = pub_socket(self.ctx, cfg.bind, self.keys, cfg.hwm)
            self.endpoint = endpoint_of(self.pub)
            for peer, endpoint in cfg.peers.items():
                self.add_peer(peer, endpoint)
        except BaseException:
            self.close()
            raise

    def add_peer(self, peer: str, endpoint: str) -> None:
        """Start listening to a peer (also after start, e.g. once a launcher knows every car's port)."""
        check_id(peer, "peer id")
        check_endpoint(endpoint)
        if peer == self.id or peer in self._subs.values():
            raise ValueError(f"peer {peer!r} is this car or already connected")
        peer_key = self.keys.peer_key(peer) if self.keys else None
        sock = sub_socket(self.ctx, endpoint, self.keys, peer_key, self.cfg.hwm)
        self._subs[sock] = peer
        self.poller.register(sock, zmq.POLLIN)
        self.peers[peer] = endpoint
        self._known.add(peer)
        self.clock.add_peer(peer)

    # -- send ---------------------------------------------------------------------------------------------------
    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def send(self, msg: Message) -> None:
        self.pub.send(encode(msg, self.limits), zmq.NOBLOCK)  # PUB never blocks: a full queue drops

    def publish_state(self, pose: Sequence[float], vel: Sequence[float], acc: Sequence[float], intent: int,
                      error_bound: float, t_meas_ns: int | None = None) -> StateMsg:
        """Broadcast own state measured at t_meas_ns (default: now); returns the message sent."""
        t_send = self.now_ns()
        msg = StateMsg(self.id, self._next_seq(), t_send, t_send if t_meas_ns is None else int(t_meas_ns),
                       tuple(map(float, pose)), tuple(map(float, vel)), tuple(map(float, acc)), int(intent),
                       float(error_bound))
        self.send(msg)
        return msg

    def publish_estop(self, reason: str) -> EStopMsg:
        """Broadcast an e-stop: every peer that hears it latches it (`node.estop`)."""
        msg = EStopMsg(self.id, self._next_seq(), self.now_ns(), reason)
        self.send(msg)
        return msg

    def clear_estop(self) -> None:
        self.estop = None

    # -- receive ------------------------------------------------------------------------------------------------
    def poll(self, timeout_ms: int = 0) -> list[Message]:
        """Handle what has arrived (waiting up to timeout_ms for the first); returns accepted state/e-stop messages."""
        accepted: list[Message] = []
        handled = 0
        for sock, _ in self.poller.poll(timeout_ms):
            peer = self._subs[sock]
            while handled < MAX_PER_POLL:
                try:
                    data = sock.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                handled += 1
                self.handle(data, peer, self.now_ns(), accepted)
        if self.delay is not None:
            now = self.now_ns()
            for msg, peer in self.delay.due(now):
                self._accept(msg, peer, now, accepted)
        if self.clock.estimating and self.clock.ping_due(self.now_ns()):
            self._send_pings()
        return accepted

    def handle(self, data: bytes, peer: str, now_ns: int, accepted: list[Message]) -> None:
        """One frame from `peer`'s socket: accept it into `accepted`/the table or count why not."""
        self.received += 1
        try:
            msg = decode(data, self.limits)
            if msg.id != peer:
                raise Rejected("spoofed" if msg.id in self._known else "unknown_sender",
                               f"id {msg.id!r} on {peer}'s socket")
        except Rejected as rej:
            self._count(peer, rej.reason)
            return
        if self.delay is not None and type(msg) is StateMsg:
            if not self.delay.push((msg, peer), now_ns):
                self._count(peer, "injected_drop")
            return
        self._accept(msg, peer, now_ns, accepted)

    def _accept(self, msg: Message, peer: str, now_ns: int, accepted: list[Message]) -> None:
        try:
            self.table.accept(msg, now_ns)
        except Rejected as rej:
            self._count(peer, rej.reason)
            return
        kind = type(msg)
        if kind is StateMsg:
            accepted.append(msg)
        elif kind is EStopMsg:
            if self.estop is None:
                self.estop = msg
            accepted.append(msg)
        elif kind is PingMsg:
            reply = self.clock.on_ping(msg, self.id, now_ns)
            if reply is not None:
                requester, t1, t2 = reply
                self.send(PongMsg(self.id, self._next_seq(), self.now_ns(), requester, t1, t2))
        else:
            self.clock.on_pong(msg, self.id, now_ns)

    def _send_pings(self) -> None:
        for peer in self.peers:
            t1 = self.now_ns()
            self.clock.sent_ping(t1)
            self.send(PingMsg(self.id, self._next_seq(), t1, peer))

    def _count(self, peer: str, reason: str) -> None:
        self.drops[reason] += 1
        self.drops_by_peer[(peer, reason)] += 1

    # -- read ---------------------------------------------------------------------------------------------------
    def snapshot(self, now_ns: int | None = None) -> list[Neighbour]:
        return self.table.snapshot(self.now_ns() if now_ns is None else now_ns)

    def stats(self) -> dict:
        return {"received": self.received, "drops": dict(self.drops), "neighbours": len(self.table),
                "estop": self.estop.id if self.estop else None}

    def close(self) -> None:
        for sock in list(self._subs):
            sock.close(linger=0)
        self._subs.clear()
        if getattr(self, "pub", None) is not None:
            self.pub.close(linger=0)
            self.pub = None
        if self.auth is not None:
            self.auth.stop()
            self.auth = None
        if not self.ctx.closed:
            self.ctx.term()

    def __enter__(self) -> "V2VNode":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
