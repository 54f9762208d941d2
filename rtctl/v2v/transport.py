"""ZeroMQ sockets of the V2V bus, configured in one place (the benchmark's raw baseline uses them too).

Topology: each car binds one PUB; each receiver holds one SUB per peer. With keys, a PUB is a CURVE server
holding its car's secret key and each SUB is a CURVE client naming that peer's public key: the handshake only
completes with the holder of that peer's secret, which binds the socket to the peer (ids are then checked
against it). A ZAP authenticator with the folder of public keys lets only known cars subscribe ("ironhouse").
"""
from __future__ import annotations

import zmq
from zmq.auth.thread import ThreadAuthenticator

from rtctl.v2v.keys import CarKeys

# Hard transport cap: libzmq drops the connection on a larger frame (it is never buffered). Below it, the
# receiver's own limits.max_message_bytes drops and counts ("oversized").
MAX_FRAME_BYTES = 65536


def _common(sock: zmq.Socket, hwm: int) -> None:
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.RCVHWM, hwm)
    sock.setsockopt(zmq.RECONNECT_IVL, 100)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
    sock.setsockopt(zmq.HEARTBEAT_IVL, 1000)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3000)


def start_authenticator(ctx: zmq.Context, keys: CarKeys) -> ThreadAuthenticator:
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain="*", location=str(keys.public_dir))
    return auth


def pub_socket(ctx: zmq.Context, bind: str, keys: CarKeys | None, hwm: int) -> zmq.Socket:
    sock = ctx.socket(zmq.PUB)
    try:
        _common(sock, hwm)
        if keys is not None:
            sock.curve_secretkey = keys.secret
            sock.curve_publickey = keys.public
            sock.curve_server = True
        sock.bind(bind)
    except zmq.ZMQError as err:
        sock.close(linger=0)
        raise OSError(f"cannot bind V2V publisher to {bind}: {err}") from None
    return sock


def sub_socket(ctx: zmq.Context, endpoint: str, keys: CarKeys | None, peer_key: bytes | None,
               hwm: int) -> zmq.Socket:
    sock = ctx.socket(zmq.SUB)
    try:
        _common(sock, hwm)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)
        if keys is not None:
            sock.curve_secretkey = keys.secret
            sock.curve_publickey = keys.public
            sock.curve_serverkey = peer_key
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        sock.connect(endpoint)
    except zmq.ZMQError as err:
        sock.close(linger=0)
        raise OSError(f"cannot connect V2V subscriber to {endpoint}: {err}") from None
    return sock


def endpoint_of(sock: zmq.Socket) -> str:
    """The address actually bound (resolves tcp://127.0.0.1:* to the port the OS picked)."""
    return sock.getsockopt(zmq.LAST_ENDPOINT).decode()
