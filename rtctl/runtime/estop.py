"""The operator e-stop of a running `rtctl deploy`: one address per run, refused when taken, acknowledged.

Rules:
* Address: ``estop.address: auto`` (the default) is ``ipc:///tmp/rtctl-estop-<pid>``, unique on the host;
  an explicit ZeroMQ address is used as given. Either way it is written to ``RUN/estop_address`` so that
  ``rtctl estop RUN`` finds it (no shared default that a second deploy would silently take over).
* Taken: before binding, a ping is sent to the address; an answer within ``PING_S`` means another run owns
  it, and this one refuses to start (one line). An ipc file nobody answers on is a leftover and is reused.
* Protocol (REQ/REP, plain bytes, no pickle): ``estop`` → the run triggers its e-stop and answers
  ``ack <robot kind>``; ``ping`` → ``pong``. `send_estop` waits ``timeout_s`` (0.5 s) for the answer and
  returns whether a run acknowledged; ``rtctl estop`` exits 1 when none did.
* A line ``e`` on the terminal (when stdin is one) triggers the same e-stop.
"""
from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Callable, Optional

from rtctl.config import ConfigError

PING_S = 0.3
ADDRESS_FILE = "estop_address"


def resolve_address(address: Optional[str]) -> Optional[str]:
    """``auto`` → this process's own address; None → no message e-stop; anything else as given."""
    if address == "auto":
        return f"ipc:///tmp/rtctl-estop-{os.getpid()}"
    return address


def _ask(address: str, message: bytes, timeout_s: float) -> Optional[bytes]:
    """Send one request and wait for its answer; None when nobody answers in time."""
    import zmq

    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(address)
        sock.send(message)
        if sock.poll(int(timeout_s * 1000)):
            return sock.recv()
        return None
    except zmq.ZMQError:
        return None
    finally:
        sock.close()


def send_estop(address: str, timeout_s: float = 0.5) -> bool:
    """Operator side: ask the run at ``address`` to e-stop; True when it acknowledged within ``timeout_s``."""
    answer = _ask(address, b"estop", timeout_s)
    return answer is not None and answer.startswith(b"ack")


def address_of(target: str) -> str:
    """A run folder (its ``estop_address`` file) or a ZeroMQ address."""
    p = Path(target)
    if p.is_dir():
        f = p / ADDRESS_FILE
        if not f.is_file():
            raise ConfigError(f"{p} has no {ADDRESS_FILE}: not a deploy run folder with a message e-stop")
        return f.read_text().strip()
    return target


def check_free(address: Optional[str]) -> None:
    """Refuse an address another running deploy answers on (before anything starts)."""
    address = resolve_address(address)
    if address and _ask(address, b"ping", PING_S) is not None:
        raise ConfigError(f"config error: key 'estop.address' = {address!r} is in use by another running deploy; "
                          f"give this one another address (or 'auto')")


ESTOP_KEYS = ("e", "estop", "stop")  # a line of these on the run's terminal is the operator's e-stop


def read_key(trigger: Callable[[], None]) -> None:
    """Read the terminal's lines until one is an e-stop key, then call ``trigger()`` once (arm deploys and
    vehicle trials alike; run it in a daemon thread)."""
    for line in sys.stdin:
        if line.strip().lower() in ESTOP_KEYS:
            trigger()
            return


class EstopListeners:
    """Key and message e-stop sources for one run; each calls ``trigger(reason)`` once."""

    def __init__(self, address: Optional[str], key: bool, trigger: Callable[[str], None], robot_kind: str = "arm") -> None:
        self.trigger, self.robot_kind = trigger, robot_kind
        self.address = resolve_address(address)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sock = None
        if self.address:
            import zmq

            check_free(self.address)
            self._sock = zmq.Context.instance().socket(zmq.REP)
            self._sock.setsockopt(zmq.LINGER, 0)
            try:
                self._sock.bind(self.address)
            except zmq.ZMQError as err:
                self._sock.close()
                raise ConfigError(f"config error: key 'estop.address' = {self.address!r}: cannot bind ({err})") from None
            self._spawn(self._messages)
        if key and sys.stdin is not None and sys.stdin.isatty():
            self._spawn(self._keys)

    def write_address(self, run_dir: Path) -> None:
        if self.address:
            (Path(run_dir) / ADDRESS_FILE).write_text(self.address + "\n")

    def _spawn(self, fn) -> None:
        t = threading.Thread(target=fn, name=f"estop-{fn.__name__}", daemon=True)
        t.start()
        self._threads.append(t)

    def _keys(self) -> None:
        read_key(lambda: self.trigger("key"))

    def _messages(self) -> None:
        fired = False
        while not self._stop.is_set():
            if not self._sock.poll(100):
                continue
            msg = self._sock.recv()
            if msg[:5] == b"estop":
                if not fired:
                    self.trigger("message")
                    fired = True
                self._sock.send(b"ack " + self.robot_kind.encode())
            else:
                self._sock.send(b"pong")

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            if t.name == "estop-_messages":
                t.join(timeout=1.0)
        if self._sock is not None:
            self._sock.close()
        if self.address and self.address.startswith("ipc://"):
            try:
                os.unlink(self.address[len("ipc://"):])
            except OSError:
                pass
