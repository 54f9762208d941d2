"""Pose sources: where a real car learns its position (x, y, yaw) in the track frame.

A plug-in is anything with `poll() -> Pose | None` (newest pose since the last call, never waiting) and
`close()`. Two transports carry the same msgpack map {"id": str, "t_ns": int, "pose": [x, y, yaw]}:
`ZmqPoseSource` subscribes to a motion-capture bridge (or onboard localisation) that publishes on ZeroMQ,
`UdpPoseSource` listens for datagrams (what many mocap bridges send). The VESC emulator publishes the same
map over ZeroMQ, so tests run the real path. Frames are size-limited, validated (types, finiteness, range)
and only the configured body id is taken; bad frames are counted, never raised into the control loop.
"""
from __future__ import annotations

import math
import socket
import time
from typing import NamedTuple, Protocol

import msgpack
import zmq

MAX_FRAME = 512
MAX_ABS_M = 1.0e4


class Pose(NamedTuple):
    x: float
    y: float
    yaw: float
    t_ns: int  # measurement time in the receiver's monotonic clock (sender stamps are only trusted for order)


class PoseSource(Protocol):
    def poll(self) -> Pose | None: ...

    def close(self) -> None: ...


def encode_pose(body: str, x: float, y: float, yaw: float, t_ns: int) -> bytes:
    return msgpack.packb({"id": body, "t_ns": int(t_ns), "pose": [float(x), float(y), float(yaw)]})


def decode_pose(data: bytes, body: str) -> tuple[float, float, float, int] | None:
    """Frame -> (x, y, yaw, sender t_ns) if it is a valid pose of `body`, else None."""
    if len(data) > MAX_FRAME:
        return None
    try:
        obj = msgpack.unpackb(data, raw=False, max_str_len=64, max_bin_len=0, max_array_len=4, max_map_len=4,
                              max_ext_len=0)
    except Exception:  # msgpack raises several types on hostile input
        return None
    if type(obj) is not dict or obj.keys() != {"id", "t_ns", "pose"} or obj["id"] != body:
        return None
    p, t = obj["pose"], obj["t_ns"]
    if type(t) is not int or t < 0 or type(p) is not list or len(p) != 3:
        return None
    if not all(type(v) in (int, float) and math.isfinite(v) and abs(v) <= MAX_ABS_M for v in p):
        return None
    return float(p[0]), float(p[1]), float(p[2]), t


class _Source:
    """Drains its transport without waiting and keeps the newest valid pose of its body by sender time
    (older or repeated stamps are replays or reordering); counts rejected frames."""

    def __init__(self, body: str) -> None:
        self.body = body
        self.rejected = 0
        self._last_t = -1

    def _recv(self) -> bytes | None:  # one frame, or None when nothing is waiting
        raise NotImplementedError

    def poll(self) -> Pose | None:
        best = None
        for _ in range(1000):  # a flood cannot hold the caller
            data = self._recv()
            if data is None:
                break
            got = decode_pose(data, self.body)
            if got is None:
                self.rejected += 1
            elif got[3] > self._last_t:
                self._last_t = got[3]
                best = Pose(got[0], got[1], got[2], time.monotonic_ns())
        return best


class ZmqPoseSource(_Source):
    def __init__(self, endpoint: str, body: str, ctx: zmq.Context | None = None) -> None:
        super().__init__(body)
        self._own_ctx = ctx is None
        self.ctx = ctx or zmq.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, 100)
        self.sock.setsockopt(zmq.MAXMSGSIZE, 4 * MAX_FRAME)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.connect(endpoint)

    def _recv(self) -> bytes | None:
        try:
            return self.sock.recv(zmq.NOBLOCK)
        except zmq.Again:
            return None

    def close(self) -> None:
        self.sock.close(linger=0)
        if self._own_ctx:
            self.ctx.term()


class UdpPoseSource(_Source):
    def __init__(self, host: str, port: int, body: str) -> None:
        super().__init__(body)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.sock.setblocking(False)

    def _recv(self) -> bytes | None:
        try:
            return self.sock.recv(4 * MAX_FRAME)
        except (BlockingIOError, InterruptedError):
            return None

    def close(self) -> None:
        self.sock.close()


def make_pose_source(kind: str, endpoint: str, body: str) -> PoseSource:
    """kind "zmq" (endpoint tcp://host:port) or "udp" (endpoint host:port to listen on)."""
    if kind == "zmq":
        return ZmqPoseSource(endpoint, body)
    if kind == "udp":
        host, _, port = endpoint.rpartition(":")
        if not port.isdigit():
            raise ValueError(f"udp pose endpoint {endpoint!r} must be host:port")
        return UdpPoseSource(host or "0.0.0.0", int(port), body)
    raise ValueError(f"pose source kind {kind!r} unknown (zmq, udp)")
