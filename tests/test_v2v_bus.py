"""The bus over real ZeroMQ sockets on 127.0.0.1: delivery, e-stop, CURVE id binding, spoofing, replay,
in-protocol clock offsets, injection, and a killed car going stale. Every loop has a deadline."""
import os
import stat
import subprocess
import sys
import time

import msgpack
import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from rtctl.v2v.config import ClockConfig, InjectionConfig, Limits, V2VConfig
from rtctl.v2v.keys import load_keys, make_keys
from rtctl.v2v.node import V2VNode
from rtctl.v2v.schema import StateMsg
from rtctl.v2v.transport import sub_socket

LOCAL = "tcp://127.0.0.1:*"


def node(car, keys_dir=None, **kw):
    return V2VNode(V2VConfig(id=car, bind=LOCAL, keys_dir=str(keys_dir) if keys_dir else None, **kw))


def pump(receivers, until, senders=(), timeout_s=10.0):
    """Publish from senders and poll receivers until `until()` holds; fail (not hang) after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while not until():
        assert time.monotonic() < deadline, f"not reached in {timeout_s} s; drops: {[dict(r.drops) for r in receivers]}"
        for s in senders:
            s()
        for r in receivers:
            r.poll(10)


def publish(n, x=1.0):
    return lambda: n.publish_state((x, 0.5, 0.0), (1.0, 0.0), (0.0, 0.0), 1, 0.05)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    make_keys(d, ["car0", "car1", "car2", "op"])
    return d


def test_make_keys_layout_permissions_and_errors(tmp_path):
    paths = make_keys(tmp_path, ["a", "b"])
    assert paths["a"].public == tmp_path / "public" / "a.key"
    assert stat.S_IMODE(os.stat(paths["a"].secret).st_mode) == 0o600
    assert load_keys(tmp_path, "b").peer_key("a") == load_keys(tmp_path, "a").public
    with pytest.raises(FileExistsError):
        make_keys(tmp_path, ["a"])
    with pytest.raises(ValueError, match="car id"):
        make_keys(tmp_path, ["bad id"])
    with pytest.raises(ValueError, match="repeat"):
        make_keys(tmp_path, ["c", "c"])
    with pytest.raises(FileNotFoundError, match="rtctl keys"):
        load_keys(tmp_path, "zz")


def test_states_arrive_and_estop_is_latched_by_every_car():
    a, b, op = node("car0"), node("car1"), node("op")
    try:
        b.add_peer("car0", a.endpoint)
        for n in (a, b):
            n.add_peer("op", op.endpoint)
        pump([b], lambda: "car0" in b.table, [publish(a, 2.0)])
        nb = b.snapshot()[0]
        assert nb.id == "car0" and nb.state.pose[0] == 2.0 and 0 <= nb.age_s < b.limits.max_age_s
        pump([a, b], lambda: a.estop and b.estop, [lambda: op.publish_estop("operator")])
        assert a.estop.id == "op" and b.estop.reason == "operator"
        assert not b.drops
    finally:
        for n in (a, b, op):
            n.close()


def test_curve_binds_ids_to_keys_and_rejects_spoofing(keys):
    car0, car1, car2 = node("car0", keys), node("car1", keys), node("car2", keys)
    rx = node("rx_unused", None)  # a receiver without keys cannot talk to CURVE cars at all
    try:
        for peer in (car0, car2):
            car1.add_peer(peer.id, peer.endpoint)
        rx.add_peer("car0", car0.endpoint)
        pump([car1], lambda: "car0" in car1.table, [publish(car0)])
        # car2 holds a valid key but claims car0's id: arrives on car2's socket, dropped as spoofed
        forged = StateMsg("car0", 10**18, 0, 0, (9.0, 9.0, 0.0), (0.0, 0.0), (0.0, 0.0), 0, 0.0)
        seq_before = car1.table.latest("car0").seq

        def forge():
            t = car2.now_ns()
            msg = forged._replace(t_send_ns=t, t_meas_ns=t)
            car2.pub.send(msgpack.packb({"v": 1, "type": "state", **{k: list(v) if isinstance(v, tuple) else v
                                                                     for k, v in msg._asdict().items()}}))
        pump([car1], lambda: car1.drops["spoofed"] >= 3, [forge])
        assert car1.drops_by_peer[("car2", "spoofed")] >= 3
        assert car1.table.latest("car0").seq == seq_before and "car2" not in car1.table
        rx.poll(50)
        assert rx.received == 0
    finally:
        for n in (car0, car1, car2, rx):
            n.close()


def test_wrong_key_server_never_gets_a_message_through(keys):
    """An impostor listening where car1 expects car0, but holding car2's secret: the CURVE handshake fails.

    Its frames are valid car0 states, so had one come through car0's socket it would be in the table."""
    impostor = node("car2", keys)
    monitor = impostor.pub.get_monitor_socket()
    car1, op = node("car1", keys), node("op", keys)
    try:
        car1.add_peer("car0", impostor.endpoint)
        assert saw_event(monitor, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)  # car1's hello was not sealed for car2
        car1.add_peer("op", op.endpoint)

        def fake():
            t = impostor.now_ns()
            impostor.pub.send(msgpack.packb({"v": 1, "type": "state", "id": "car0", "seq": t, "t_send_ns": t,
                                             "t_meas_ns": t, "pose": [9.0, 9.0, 0.0], "vel": [0.0, 0.0],
                                             "acc": [0.0, 0.0], "intent": 0, "error_bound": 0.0}))
        # the real operator comes through the same receiver while the impostor keeps sending
        pump([car1], lambda: car1.estop is not None, [fake, lambda: op.publish_estop("real")])
        for _ in range(20):
            fake()
            car1.poll(10)
        assert car1.estop.id == "op" and "car0" not in car1.table
        assert not any(peer == "car0" for peer, _ in car1.drops_by_peer)  # not even a dropped frame
    finally:
        impostor.pub.disable_monitor()
        monitor.close(linger=0)
        for n in (impostor, car1, op):
            n.close()


def test_replayed_frame_is_rejected(keys):
    car0, car1 = node("car0", keys), node("car1", keys)
    ctx = zmq.Context()
    k1 = load_keys(keys, "car1")
    tap = sub_socket(ctx, car0.endpoint, k1, k1.peer_key("car0"), hwm=100)  # records car0's real frames
    try:
        car1.add_peer("car0", car0.endpoint)
        frames = []

        def send_and_tap():
            publish(car0)()
            if tap.poll(10):
                frames.append(tap.recv())
        pump([car1], lambda: frames and car1.table.latest("car0") is not None, [send_and_tap])
        pump([car1], lambda: car1.table.latest("car0").seq >= msgpack.unpackb(frames[0])["seq"], [])
        car0.pub.send(frames[0])  # an old frame, bit for bit, from the key holder's socket
        pump([car1], lambda: car1.drops["old_seq"] >= 1)
        assert car1.drops_by_peer[("car0", "old_seq")] == 1
    finally:
        tap.close(linger=0)
        ctx.term()
        car0.close()
        car1.close()


def saw_event(monitor, event, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if monitor.poll(50) and recv_monitor_message(monitor)["event"] == event:
            return True
    return False


def test_unknown_key_cannot_subscribe(keys, tmp_path):
    car0 = node("car0", keys)
    make_keys(tmp_path, ["stranger"])
    stranger = load_keys(tmp_path, "stranger")
    ctx = zmq.Context()
    eaves = ctx.socket(zmq.SUB)
    monitor = eaves.get_monitor_socket()
    try:
        eaves.curve_secretkey, eaves.curve_publickey = stranger.secret, stranger.public
        eaves.curve_serverkey = load_keys(keys, "car0").public
        eaves.setsockopt(zmq.SUBSCRIBE, b"")
        eaves.connect(car0.endpoint)
        assert saw_event(monitor, zmq.EVENT_HANDSHAKE_FAILED_AUTH)  # ZAP refused a key not in public/
        for _ in range(20):
            publish(car0)()
            assert not eaves.poll(10)
    finally:
        eaves.disable_monitor()
        monitor.close(linger=0)
        eaves.close(linger=0)
        ctx.term()
        car0.close()


def test_clock_offset_estimated_over_the_bus():
    skew = 5_000_000_000  # car0's clock runs 5 s ahead of car1's
    cfg = ClockConfig(offsets="estimate", ping_interval_s=0.02)
    a = V2VNode(V2VConfig(id="car0", bind=LOCAL, clock=cfg), clock_ns=lambda: time.monotonic_ns() + skew)
    b = V2VNode(V2VConfig(id="car1", bind=LOCAL, clock=cfg))
    try:
        a.add_peer("car1", b.endpoint)
        b.add_peer("car0", a.endpoint)
        pump([a, b], lambda: "car0" in b.table, [publish(a)])  # unsynced drops until the first pong
        assert b.drops["unsynced"] >= 1 or b.clock.offset_ns("car0") is not None
        pump([a, b], lambda: len(b.clock._samples["car0"]) >= 3, [publish(a)])
        err = abs(b.clock.offset_ns("car0") - (-skew))
        assert err <= b.clock.rtt_ns("car0") / 2 + 1  # NTP's bound, whatever the machine's load
        assert b.snapshot()[0].age_s < 1.0  # not 5 s: the offset is applied
    finally:
        a.close()
        b.close()


def test_injected_delay_on_the_bus():
    a = node("car0")
    b = node("car1", injection=InjectionConfig(kind="fixed", steps=2, dt_s=0.05))
    try:
        b.add_peer("car0", a.endpoint)
        pump([b], lambda: "car0" in b.table, [publish(a)])
        assert b.snapshot()[0].age_s >= 0.1  # held 2 steps of 50 ms before it reached the table
    finally:
        a.close()
        b.close()


CAR = """
import sys, time
from rtctl.v2v.config import V2VConfig
from rtctl.v2v.node import V2VNode
n = V2VNode(V2VConfig(id="car0", bind="tcp://127.0.0.1:*"))
print(n.endpoint, flush=True)
deadline = time.monotonic() + 30  # killed long before; the deadline only bounds an orphan
while time.monotonic() < deadline:
    n.publish_state((1.0, 0.0, 0.0), (1.0, 0.0), (0.0, 0.0), 1, 0.05)
    time.sleep(0.02)
"""


def test_killed_car_goes_stale():
    proc = subprocess.Popen([sys.executable, "-c", CAR], stdout=subprocess.PIPE, text=True)
    rx = node("car1", limits=Limits(max_age_s=0.3))
    try:
        rx.add_peer("car0", proc.stdout.readline().strip())
        pump([rx], lambda: "car0" in rx.table, timeout_s=20)
        proc.kill()
        proc.wait(10)
        pump([rx], lambda: rx.snapshot()[0].age_s > rx.limits.max_age_s, timeout_s=10)
        assert rx.snapshot()[0].id == "car0"  # still listed, with an age the shield widens its margin by
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()
        rx.close()
