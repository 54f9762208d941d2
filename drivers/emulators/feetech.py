"""A Feetech bus emulator on a pseudo-terminal: the SO-101's six STS3215 servos (ids 1..6) for the
unmodified lerobot / scservo_sdk code.

Protocol 0 packets (what scservo_sdk sends), ``FF FF id len inst params… checksum`` with
``len = len(params) + 2`` and ``checksum = ~(id + len + inst + Σparams) & 0xFF``; status packets are
``FF FF id len error params… checksum``. Instructions served: PING (also broadcast), READ, WRITE,
REG_WRITE + ACTION, SYNC_READ (each listed servo answers in list order) and SYNC_WRITE (no answer). A packet
with a bad checksum is dropped, as a servo does.

Faults, injected by method call (tests) or scheduled with ``--fault`` (drills): a servo stops answering
(``silent:ID``), status packets with a broken checksum (``corrupt:ID`` every one, ``corrupt_once:ID`` the
next one), the port closing (``close``: the pty master closes, the driver's next read fails), and a hand
pushing a joint (``push:ID:OFFSET_DEG:DURATION_S``: moved by the offset from where it is and held there, its
Present_Position ignoring Goal_Position until the hand lets go; then it tracks its goal again).

Bus-level truth: with ``--goal-log PATH`` every packet that writes Goal_Position (SYNC_WRITE or WRITE) is
appended to PATH as one JSON line ``{"t_ns", "ids", "goal"}`` (time.monotonic_ns() when its bytes were read
from the pty: the same clock as the driver's on this host; goals in raw ticks), flushed every 0.25 s
(`rtctl.drivers.emulators.jsonl_log`).

Run ``python -m rtctl.drivers.emulators.feetech [--calibration FILE] [--fault KIND[:ID]@SECONDS]…``: it prints
``PTY <slave path>`` on its first line and serves until SIGTERM/SIGINT; with ``--stdin-control`` it also
takes commands on stdin (faults now, ``dump``) and exits when stdin closes, so it never outlives the deploy
or test that started it (`EmulatorProcess`).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import select
import signal
import sys
import threading
import time
import tty
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

from rtctl.drivers.emulators.jsonl_log import JsonlLog
from rtctl.drivers.emulators.process import EmulatorProcess  # noqa: F401 (re-exported: callers import it here)
from rtctl.drivers.emulators.sts3215 import CONTROL_TABLE, RESOLUTION, SIGN_BITS, Servo, decode_sign_magnitude

BROADCAST_ID = 0xFE
INST_PING, INST_READ, INST_WRITE, INST_REG_WRITE, INST_ACTION = 1, 2, 3, 4, 5
INST_SYNC_READ, INST_SYNC_WRITE = 0x82, 0x83
SO101_IDS = (1, 2, 3, 4, 5, 6)
GOAL_ADDR = CONTROL_TABLE["Goal_Position"][0]
FAULT_KINDS = ("silent", "corrupt", "corrupt_once", "close", "push")
FAULT_USAGE = "expected KIND[:ID]@SECONDS, e.g. silent:3@5, close@8 or push:1:35:1.5@10 (ID:OFFSET_DEG:DURATION_S)"


def checksum(body: Iterable[int]) -> int:
    """Over id, length, instruction/error and parameters (everything but the FF FF header)."""
    return ~sum(body) & 0xFF


def packet(servo_id: int, first: int, params: bytes = b"") -> bytes:
    """An instruction (first = instruction) or status (first = error byte) packet."""
    body = bytes([servo_id, len(params) + 2, first]) + params
    return b"\xff\xff" + body + bytes([checksum(body)])


@dataclass
class Fault:
    at_s: float
    kind: str  # silent | corrupt | corrupt_once | close | push
    servo_id: Optional[int] = None
    offset_deg: Optional[float] = None  # push only
    duration_s: Optional[float] = None  # push only

    @classmethod
    def parse(cls, text: str) -> "Fault":
        """``KIND[:ID]@SECONDS``, e.g. ``silent:3@5`` or ``close@8``; a push is
        ``push:ID:OFFSET_DEG:DURATION_S@SECONDS``, e.g. ``push:1:35:1.5@10``. Errors are one line."""
        try:
            what, at = text.split("@")
            kind, *args = what.split(":")
            at_s = float(at)
            if kind == "push" and len(args) == 3:
                fault = cls(at_s, kind, int(args[0]), float(args[1]), float(args[2]))
            elif len(args) <= 1:
                fault = cls(at_s, kind, int(args[0]) if args and args[0] else None)
            else:
                raise ValueError
        except ValueError:
            raise ValueError(f"fault {text!r}: {FAULT_USAGE}") from None
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault {text!r}: kind must be {', '.join(FAULT_KINDS[:-1])} or {FAULT_KINDS[-1]}")
        if (kind == "close") != (fault.servo_id is None):
            raise ValueError(f"fault {text!r}: {kind} {'takes no' if kind == 'close' else 'needs a'} servo id")
        if kind == "push" and fault.offset_deg is None:
            raise ValueError(f"fault {text!r}: push needs ID:OFFSET_DEG:DURATION_S, e.g. push:1:35:1.5@10")
        if kind == "push" and not (math.isfinite(fault.offset_deg) and math.isfinite(fault.duration_s)
                                   and fault.duration_s > 0 and abs(fault.offset_deg) < 360):
            raise ValueError(f"fault {text!r}: push offset must be within ±360° and its duration > 0 s")
        if not (math.isfinite(at_s) and at_s >= 0):
            raise ValueError(f"fault {text!r}: the time after @ must be ≥ 0 s")
        return fault


class FeetechBus:
    """The servos on one bus and the packet handling; no I/O (the pty server feeds it bytes)."""

    def __init__(self, servos: dict[int, Servo]) -> None:
        self.servos = servos
        self.silent: set[int] = set()
        self.corrupt: dict[int, int] = {}  # id -> responses left to corrupt (-1: all)
        self.counts = {"packets": 0, "bad_checksum": 0, "responses": 0, "corrupted": 0}
        self._reg: dict[int, tuple[int, bytes]] = {}
        self._buf = bytearray()
        self.goal_log: Optional[JsonlLog] = None
        self._rx_ns = 0

    def feed(self, data: bytes, rx_ns: Optional[int] = None) -> bytes:
        """Take bytes from the host (read at ``rx_ns``, time.monotonic_ns(); default now), return the bytes
        the servos answer."""
        self._rx_ns = time.monotonic_ns() if rx_ns is None else rx_ns
        self._buf += data
        out = bytearray()
        while True:
            start = self._buf.find(b"\xff\xff")
            if start < 0:
                del self._buf[:-1]  # keep a trailing 0xFF: it may start the next header
                return bytes(out)
            del self._buf[:start]
            if len(self._buf) < 4:
                return bytes(out)
            n = self._buf[3] + 4
            if n < 6:
                del self._buf[:2]  # length too small to be a packet: resync on the next header
                continue
            if len(self._buf) < n:
                return bytes(out)
            pkt, self._buf = bytes(self._buf[:n]), self._buf[n:]
            self.counts["packets"] += 1
            if pkt[-1] != checksum(pkt[2:-1]):
                self.counts["bad_checksum"] += 1
                continue
            out += self.handle(pkt[2], pkt[4], pkt[5:-1])

    def handle(self, sid: int, inst: int, params: bytes) -> bytes:
        if inst == INST_SYNC_READ and sid == BROADCAST_ID and len(params) >= 2:
            addr, length = params[0], params[1]
            return b"".join(self._status(i, self.servos[i].read(addr, length)) for i in params[2:] if i in self.servos)
        if inst == INST_SYNC_WRITE and sid == BROADCAST_ID and len(params) >= 2:
            addr, length = params[0], params[1]
            body = params[2:]
            entries = [(body[k], body[k + 1:k + 1 + length]) for k in range(0, len(body) - length, length + 1)]
            self._log_goals(addr, entries)
            for sid_k, data in entries:
                if sid_k in self.servos and sid_k not in self.silent:
                    self.servos[sid_k].write(addr, data)
            return b""
        targets = list(self.servos) if sid == BROADCAST_ID else [sid] if sid in self.servos else []
        if inst == INST_WRITE and len(params) >= 1:
            self._log_goals(params[0], [(i, params[1:]) for i in targets])
        out = b""
        for i in targets:
            servo = self.servos[i]
            if inst == INST_PING:
                out += self._status(i)
            elif inst == INST_READ and len(params) == 2:
                out += self._status(i, servo.read(params[0], params[1]))
            elif inst == INST_WRITE and len(params) >= 1:
                err = servo.write(params[0], params[1:]) if i not in self.silent else 0
                out += self._status(i, err=err)
            elif inst == INST_REG_WRITE and len(params) >= 1:
                self._reg[i] = (params[0], params[1:])
                out += self._status(i)
            elif inst == INST_ACTION and i in self._reg:
                servo.write(*self._reg.pop(i))
        # broadcast instructions other than PING get no status packet
        return out if sid != BROADCAST_ID or inst == INST_PING else b""

    def _log_goals(self, addr: int, entries: list[tuple[int, bytes]]) -> None:
        """One goal-log line for a packet whose data covers Goal_Position (the bus-level record of commands)."""
        k = GOAL_ADDR - addr
        if self.goal_log is None or k < 0 or not entries or any(len(d) < k + 2 for _, d in entries):
            return
        goals = [decode_sign_magnitude(int.from_bytes(d[k:k + 2], "little"), SIGN_BITS["Goal_Position"])
                 for _, d in entries]
        self.goal_log.record(t_ns=self._rx_ns, ids=[sid for sid, _ in entries], goal=goals)

    def _status(self, sid: int, params: bytes = b"", err: int = 0) -> bytes:
        if sid in self.silent:
            return b""
        pkt = bytearray(packet(sid, err, params))
        left = self.corrupt.get(sid, 0)
        if left:
            pkt[-1] ^= 0x5A  # a broken checksum, as line noise would leave it
            self.counts["corrupted"] += 1
            if left > 0:
                self.corrupt[sid] = left - 1
        self.counts["responses"] += 1
        return bytes(pkt)


class PtyEmulator:
    """Serves a `FeetechBus` on a pseudo-terminal; `path` is what the driver opens as its serial port."""

    def __init__(self, bus: FeetechBus, faults: Iterable[Fault] = ()) -> None:
        self.bus = bus
        self.faults = sorted(faults, key=lambda f: f.at_s)
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo / line editing before pyserial opens the port
        self.path = os.ttyname(self._slave)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.closed = False

    # -- fault injection ------------------------------------------------------------------------------
    def silence(self, servo_id: int, silent: bool = True) -> None:
        with self._lock:
            (self.bus.silent.add if silent else self.bus.silent.discard)(servo_id)

    def corrupt(self, servo_id: int, count: int = -1) -> None:
        """Break the checksum of the next ``count`` status packets of a servo (-1: all of them)."""
        with self._lock:
            self.bus.corrupt[servo_id] = count

    def close_port(self) -> None:
        """The cable is pulled: the host side sees the port fail."""
        with self._lock:
            if not self.closed:
                self.closed = True
                os.close(self._master)

    def push(self, servo_id: int, offset_deg: float, duration_s: float) -> None:
        """A hand moves servo ``servo_id`` by ``offset_deg`` (+ = increasing Present_Position) and holds it."""
        with self._lock:
            if servo_id in self.bus.servos:
                self.bus.servos[servo_id].push(offset_deg * RESOLUTION / 360.0, duration_s)

    def apply(self, fault: Fault) -> None:
        if self.bus.goal_log is not None:  # the bus-side record of when each fault really began
            self.bus.goal_log.fault(fault=fault.kind, servo_id=fault.servo_id, offset_deg=fault.offset_deg,
                                    duration_s=fault.duration_s)
        if fault.kind == "silent":
            self.silence(fault.servo_id)
        elif fault.kind in ("corrupt", "corrupt_once"):
            self.corrupt(fault.servo_id, -1 if fault.kind == "corrupt" else 1)
        elif fault.kind == "push":
            self.push(fault.servo_id, fault.offset_deg, fault.duration_s)
        else:
            self.close_port()

    def control(self, line: str) -> dict:
        """One operator/test command: a fault now (``silent:3``, ``corrupt:4``, ``corrupt_once:4``,
        ``close``, ``push:1:35:1.5``) or ``dump`` (every servo's registers by name). Returns the JSON-able
        reply."""
        line = line.strip()
        if line == "dump":
            with self._lock:
                return {str(sid): {name: servo.get(name) for name in CONTROL_TABLE}
                        for sid, servo in self.bus.servos.items()}
        try:
            self.apply(Fault.parse(f"{line}@0"))
        except ValueError as err:
            return {"error": str(err)}
        return {"ok": line}

    # -- serving ----------------------------------------------------------------------------------------
    def serve(self, control_fd: Optional[int] = None, reply: Optional[Callable[[str], None]] = None) -> None:
        """Until stop(), close_port() or EOF on ``control_fd`` (lines of `control` commands; each answer is
        one JSON line passed to ``reply``)."""
        t0 = time.monotonic()
        pending = list(self.faults)
        pending_text = b""
        while not self._stop.is_set() and not self.closed:
            while pending and time.monotonic() - t0 >= pending[0].at_s:
                self.apply(pending.pop(0))
            if self.closed:
                break
            fds = [self._master] + ([control_fd] if control_fd is not None else [])
            ready, _, _ = select.select(fds, [], [], 0.02)
            if self._master in ready:
                try:
                    data = os.read(self._master, 4096)
                except OSError:  # no slave open (host between connects): wait for the next one
                    time.sleep(0.01)
                    data = b""
                rx_ns = time.monotonic_ns()  # receipt time of these bytes (goal log)
                with self._lock:
                    answer = self.bus.feed(data, rx_ns)
                if answer:
                    os.write(self._master, answer)
            if self.bus.goal_log is not None:
                self.bus.goal_log.flush_due()
            if control_fd is not None and control_fd in ready:
                chunk = os.read(control_fd, 4096)
                if not chunk:
                    break
                pending_text += chunk
                while b"\n" in pending_text:
                    line, pending_text = pending_text.split(b"\n", 1)
                    out = json.dumps(self.control(line.decode(errors="replace")))
                    if reply is not None:
                        reply(out)

    def start(self) -> "PtyEmulator":
        self._thread = threading.Thread(target=self.serve, name="feetech-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self.close_port()
        os.close(self._slave)


def so101_bus(calibration: Optional[dict] = None, start_present: Optional[list[int]] = None,
              tau_s: float = 0.05) -> FeetechBus:
    """Six STS3215 servos, ids 1..6. ``calibration`` (lerobot's JSON: motor → id, homing_offset, range_min,
    range_max) is preloaded into EEPROM, as on an arm calibrated earlier; ``start_present`` is each joint's
    initial Present_Position in ticks (default: mid-range)."""
    cal_by_id = {int(c["id"]): c for c in (calibration or {}).values()}
    servos = {}
    for k, sid in enumerate(SO101_IDS):
        c = cal_by_id.get(sid, {})
        homing = int(c.get("homing_offset", 0))
        present = start_present[k] if start_present else (int(c.get("range_min", 0)) + int(c.get("range_max", RESOLUTION - 1))) // 2
        servo = Servo(sid, actual=(present + homing) % RESOLUTION, tau_s=tau_s)
        if c:
            servo.set("Homing_Offset", homing)
            servo.set("Min_Position_Limit", int(c["range_min"]))
            servo.set("Max_Position_Limit", int(c["range_max"]))
            servo.update()
        servos[sid] = servo
    return FeetechBus(servos)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rtctl.drivers.emulators.feetech", description=__doc__.split("\n")[0])
    ap.add_argument("--calibration", help="lerobot calibration JSON preloaded into the servos' EEPROM")
    ap.add_argument("--start-present", help="comma-separated initial Present_Position ticks, ids 1..6")
    ap.add_argument("--tau", type=float, default=0.05, help="first-order joint time constant, s")
    ap.add_argument("--fault", action="append", default=[],
                    help="KIND[:ID]@SECONDS (silent, corrupt, corrupt_once, close) or "
                         "push:ID:OFFSET_DEG:DURATION_S@SECONDS")
    ap.add_argument("--goal-log", help="append every received Goal_Position packet to this file (JSON lines)")
    ap.add_argument("--stdin-control", action="store_true",
                    help="read commands from stdin (silent:ID, corrupt:ID, corrupt_once:ID, close, "
                         "push:ID:OFFSET_DEG:DURATION_S, dump; one JSON reply line each on stdout) and stop when "
                         "stdin closes (the parent is gone)")
    args = ap.parse_args(argv)
    try:
        faults = [Fault.parse(f) for f in args.fault]
        cal = json.loads(open(args.calibration).read()) if args.calibration else None
        start = [int(v) for v in args.start_present.split(",")] if args.start_present else None
        if start is not None and len(start) != len(SO101_IDS):
            raise ValueError(f"--start-present needs {len(SO101_IDS)} values, got {len(start)}")
        bus = so101_bus(cal, start, args.tau)
        bus.goal_log = JsonlLog(args.goal_log) if args.goal_log else None
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    emu = PtyEmulator(bus, faults)
    signal.signal(signal.SIGTERM, lambda *_: emu._stop.set())
    print(f"PTY {emu.path}", flush=True)
    try:
        emu.serve(sys.stdin.fileno() if args.stdin_control else None, lambda line: print(line, flush=True))
    except KeyboardInterrupt:
        pass
    finally:
        if bus.goal_log is not None:
            bus.goal_log.close()
    goals = {"goals": bus.goal_log.count} if bus.goal_log is not None else {}
    print(json.dumps({"counts": {**emu.bus.counts, **goals}}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
