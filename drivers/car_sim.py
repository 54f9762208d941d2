"""`CarSimDriver`: one car of a sim world process, reached over ZeroMQ the way a car's driver reaches its car.

The world (rtctl.vehicles.trial.world) binds a ROUTER; each car's driver connects a DEALER whose routing id is the car
id. `write()` sends the command as one msgpack map {"seq", "cmd": [accel, steer]} without waiting; the world
answers every message with the car's newest state {"seq", "t_ns", "state": [s, y, ψ, v, steer],
"pose": [x, y, yaw], "perceived": [[s, y, ψ, v], ...] (non-V2V cars the onboard sensors see, each in its
own path's frame), "perceived_idx": [their indices in the scenario's car list], "collided", "t_sim"}. `read()` drains the replies and returns the newest; when none has come for `timeout_s`
it raises DriverError (the world is gone) — and the world brakes a car whose commands stop, as a VESC does.
Replies are size-limited and validated; a malformed one is counted and ignored.
"""
from __future__ import annotations

import math
import time
from typing import Any

import msgpack
import numpy as np
import zmq

from rtctl.drivers.base import DriverError, DriverSpec

MAX_REPLY = 64 * 1024
_UNPACK = dict(raw=False, max_str_len=64, max_bin_len=0, max_array_len=256, max_map_len=16, max_ext_len=0)


def _floats(x: Any, n: int | None) -> list[float] | None:
    if type(x) is not list or (n is not None and len(x) != n):
        return None
    if not all(type(v) in (int, float) and math.isfinite(v) for v in x):
        return None
    return [float(v) for v in x]


def parse_reply(data: bytes) -> dict | None:
    """A world reply -> checked dict, or None if it is not one."""
    if len(data) > MAX_REPLY:
        return None
    try:
        r = msgpack.unpackb(data, **_UNPACK)
    except Exception:  # hostile bytes raise many types
        return None
    if type(r) is not dict or type(r.get("seq")) is not int or type(r.get("t_ns")) is not int:
        return None
    state, pose = _floats(r.get("state"), 5), _floats(r.get("pose"), 3)
    perceived = r.get("perceived")
    rows = [_floats(p, 4) for p in perceived] if type(perceived) is list else None
    if state is None or pose is None or rows is None or any(p is None for p in rows):
        return None
    idx = r.get("perceived_idx")
    if type(idx) is not list or len(idx) != len(rows) or not all(type(i) is int and 0 <= i < 256 for i in idx):
        return None
    if type(r.get("collided")) is not bool or type(r.get("t_sim")) not in (int, float):
        return None
    return {"seq": r["seq"], "t_ns": r["t_ns"], "state": state, "pose": pose, "perceived": rows,
            "perceived_idx": idx, "collided": r["collided"], "t_sim": float(r["t_sim"])}


class CarSimDriver:
    def __init__(self, endpoint: str, car_id: str, rate_hz: float = 50.0, timeout_s: float = 0.5,
                 accel_limits: tuple[float, float] = (-4.0, 3.0), steer_max: float = 0.4189,
                 connect_timeout_s: float = 30.0) -> None:
        self.endpoint, self.car_id = endpoint, car_id
        self.timeout_ns = int(timeout_s * 1e9)
        self.connect_timeout_s = connect_timeout_s
        self.spec = DriverSpec(name=f"car_sim:{car_id}", action_names=("accel", "steer"),
                               action_low=np.array([accel_limits[0], -steer_max]),
                               action_high=np.array([accel_limits[1], steer_max]),
                               observation_shapes={"state": (4,), "pose": (3,)}, units="m, rad, m/s, m/s²",
                               rate_hz=rate_hz)
        self.ctx: zmq.Context | None = None
        self.sock: zmq.Socket | None = None
        self._seq = 0
        self._newest: dict | None = None
        self._newest_rx_ns = 0
        self._last_send_ns = 0
        self._asking_since = 0
        self.malformed = 0

    def connect(self) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.ROUTING_ID, self.car_id.encode())
        self.sock.setsockopt(zmq.MAXMSGSIZE, MAX_REPLY)
        self.sock.setsockopt(zmq.SNDHWM, 10)
        self.sock.connect(self.endpoint)
        deadline = time.monotonic() + self.connect_timeout_s
        while self._newest is None:  # connect may wait; the tick has not started
            if time.monotonic() > deadline:
                self.disconnect()
                raise DriverError(f"sim world at {self.endpoint} did not answer car {self.car_id} within "
                                  f"{self.connect_timeout_s:.0f} s")
            self._send(None)
            if self.sock.poll(100):
                self._drain()

    def _send(self, cmd: list[float] | None) -> None:
        now = time.monotonic_ns()
        if now - self._last_send_ns > self.timeout_ns:
            self._asking_since = now  # silence counts from when we (again) expect answers
        self._last_send_ns = now
        self._seq += 1
        try:
            self.sock.send(msgpack.packb({"seq": self._seq, "cmd": cmd}), zmq.NOBLOCK)
        except zmq.Again:
            pass  # the world is not reading; read() will notice the silence

    def _drain(self) -> None:
        while True:
            try:
                data = self.sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            r = parse_reply(data)
            if r is None:
                self.malformed += 1
                continue
            if self._newest is None or r["seq"] >= self._newest["seq"]:
                self._newest = r
                self._newest_rx_ns = time.monotonic_ns()

    def read(self) -> dict[str, Any]:
        if self.sock is None:
            raise DriverError(f"CarSimDriver {self.car_id}: read() while not connected")
        if time.monotonic_ns() - self._last_send_ns > self.timeout_ns:
            self._send(None)  # idle since connect: ask, and count the silence from now
        self._drain()
        silent = time.monotonic_ns() - max(self._newest_rx_ns, self._asking_since)
        if silent > self.timeout_ns:
            raise DriverError(f"sim world at {self.endpoint} silent for {silent / 1e9:.2f} s (car {self.car_id})")
        r = self._newest
        return {"state": np.array(r["state"][:4]), "steer": r["state"][4], "pose": np.array(r["pose"]),
                "perceived": np.array(r["perceived"]).reshape(-1, 4),
                "perceived_idx": np.array(r["perceived_idx"], dtype=int), "collided": r["collided"],
                "t_sim": r["t_sim"], "t_ns": r["t_ns"]}

    def write(self, action: np.ndarray) -> np.ndarray:
        if self.sock is None:
            raise DriverError(f"CarSimDriver {self.car_id}: write() while not connected")
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (2,) or not np.all(np.isfinite(a)):
            raise ValueError(f"CarSimDriver.write: expected 2 finite values (accel, steer), got {a!r}")
        applied = self.spec.clip(a)
        self._send([float(applied[0]), float(applied[1])])
        return applied

    def disconnect(self) -> None:
        if self.sock is not None:
            self.sock.close(linger=0)
            self.sock = None
        if self.ctx is not None:
            self.ctx.term()
            self.ctx = None
