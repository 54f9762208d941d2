"""Bytes <-> V2V messages. msgpack only, with every unpacker limit set (no pickle, no ext types).

The size check comes before any parsing, so a large message costs one `len`. The unpacker's own limits cap
what a small hostile message can make it allocate (strings, arrays, maps, nesting depth).
"""
from __future__ import annotations

import msgpack

from rtctl.v2v.config import Limits
from rtctl.v2v.schema import MAX_REASON_LEN, Message, Rejected, StateMsg, state_ok, to_wire, validate

# The largest legal value: an estop reason string; the largest array: a pose (3); the largest map: 11 keys.
_UNPACK_LIMITS = dict(
    raw=False,
    strict_map_key=True,
    use_list=True,
    max_str_len=4 * MAX_REASON_LEN,  # in bytes of UTF-8
    max_bin_len=0,
    max_array_len=8,
    max_map_len=16,
    max_ext_len=0,
)


def _no_ext(code: int, data: bytes) -> None:
    raise ValueError(f"ext type {code} not allowed")


def unpack(data: bytes, limits: Limits) -> object:
    """Bytes -> plain object under the unpacker limits; raise Rejected('oversized'|'malformed').

    The length check is the max_buffer_size limit: `unpackb` parses one whole frame, so the frame is the
    buffer (a streaming `Unpacker(max_buffer_size=...)` per message would cost ~2x for the same guarantee).
    """
    if len(data) > limits.max_message_bytes:
        raise Rejected("oversized", f"{len(data)} bytes > {limits.max_message_bytes}")
    try:
        return msgpack.unpackb(data, ext_hook=_no_ext, **_UNPACK_LIMITS)
    except Exception as err:  # msgpack raises several types (ValueError, StackError, ExtraData, ...)
        raise Rejected("malformed", f"{type(err).__name__}: {err}") from None


def decode(data: bytes, limits: Limits) -> Message:
    """Bytes -> validated message, or raise Rejected naming the reason."""
    return validate(unpack(data, limits), limits)


def encode(msg: Message, limits: Limits) -> bytes:
    """Message -> bytes. Checks the message as a receiver would, so a car never sends what peers drop."""
    wire = to_wire(msg)
    try:
        if type(msg) is not StateMsg or not state_ok(wire, limits):
            validate(wire, limits)
    except Rejected as err:
        raise ValueError(f"refusing to send an invalid V2V message: {err}") from None
    data = msgpack.packb(wire, use_bin_type=True)
    if len(data) > limits.max_message_bytes:
        raise ValueError(f"V2V message is {len(data)} bytes, over limits.max_message_bytes={limits.max_message_bytes}")
    return data
