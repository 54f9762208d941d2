"""V2V schema v1: round trips, unpacker limits, and every rejection rule with its counted reason."""
import math

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtctl.config import ConfigError, parse_config
from rtctl.v2v.codec import decode, encode
from rtctl.v2v.config import Limits, V2VConfig
from rtctl.v2v.schema import REASONS, EStopMsg, PingMsg, PongMsg, Rejected, StateMsg, to_wire

LIM = Limits()
STATE = StateMsg("car0", 7, 2_000, 1_000, (1.0, -2.0, 0.5), (1.5, 0.0), (0.2, -0.1), 3, 0.05)


def wire(**changes):
    d = to_wire(STATE)
    d.update(changes)
    return d


def reason(obj_or_bytes, limits=LIM):
    data = obj_or_bytes if isinstance(obj_or_bytes, bytes) else msgpack.packb(obj_or_bytes, use_bin_type=True)
    with pytest.raises(Rejected) as err:
        decode(data, limits)
    assert err.value.reason in REASONS
    return err.value.reason


@pytest.mark.parametrize("msg", [STATE, EStopMsg("op", 1, 5, "operator pressed stop"), PingMsg("car1", 2, 9, "car0"),
                                 PongMsg("car0", 3, 11, "car1", 9, 10)])
def test_every_type_round_trips(msg):
    assert decode(encode(msg, LIM), LIM) == msg


def test_state_fits_a_small_frame():
    assert len(encode(STATE, LIM)) < 200


def test_ints_in_float_fields_are_accepted_as_floats():
    msg = decode(msgpack.packb(wire(pose=[1, 2, 0], error_bound=0)), LIM)
    assert msg.pose == (1.0, 2.0, 0.0) and type(msg.pose[0]) is float and type(msg.error_bound) is float


@pytest.mark.parametrize("data, why", [
    (b"", "malformed"),
    (b"\xc1", "malformed"),  # never-used msgpack byte
    (msgpack.packb([1, 2, 3]), "malformed"),
    (msgpack.packb(to_wire(STATE)) + b"\x00", "malformed"),  # trailing bytes
    (msgpack.packb(to_wire(STATE))[:-3], "malformed"),  # truncated
    (b"\x91" * 5000, "oversized"),
    (b"\x91" * 900 + b"\x00", "malformed"),  # nesting deeper than the unpacker's stack
    (msgpack.packb({**to_wire(STATE), "pad": "x" * 2000}), "oversized"),
    (msgpack.packb({1: 2, "v": 1}), "malformed"),  # strict_map_key
    (msgpack.packb(wire(pose=msgpack.ExtType(5, b"abc"))), "malformed"),  # no ext types
    (msgpack.packb(wire(id=b"car0"), use_bin_type=True), "malformed"),  # no bin
    (msgpack.packb(wire(id="x" * 600)), "malformed"),  # max_str_len
    (msgpack.packb(wire(pose=[0.0] * 50)), "malformed"),  # max_array_len
    (b"\x81\xa2id\xa2\xff\xfe", "malformed"),  # invalid UTF-8 with raw=False
])
def test_bytes_level_rejections(data, why):
    assert reason(data) == why


@pytest.mark.parametrize("changes, why", [
    ({"v": 2}, "version"), ({"v": "1"}, "version"), ({"v": True}, "version"), ({"v": 1.0}, "version"),
    ({"type": "teleport"}, "invalid"), ({"type": 1}, "invalid"),
    ({"extra": 1}, "invalid"),
    ({"id": "car 0"}, "invalid"), ({"id": "car0\n"}, "invalid"), ({"id": ""}, "invalid"), ({"id": 5}, "invalid"),
    ({"seq": -1}, "out_of_range"), ({"seq": 2**64 - 1}, "out_of_range"), ({"seq": 1.0}, "invalid"),
    ({"seq": True}, "invalid"), ({"t_send_ns": None}, "invalid"),
    ({"t_meas_ns": 3_000}, "out_of_range"),  # measured after it was sent
    ({"pose": [1.0, 2.0]}, "invalid"), ({"pose": [1.0, 2.0, 0.0, 0.0]}, "invalid"), ({"pose": (1.0,)}, "invalid"),
    ({"pose": "1,2,3"}, "invalid"), ({"pose": [1.0, "2", 0.0]}, "invalid"), ({"pose": [1.0, None, 0.0]}, "invalid"),
    ({"pose": [1.0, True, 0.0]}, "invalid"), ({"pose": [[1.0], 2.0, 0.0]}, "invalid"),
    ({"pose": [float("nan"), 0.0, 0.0]}, "nonfinite"), ({"vel": [float("inf"), 0.0]}, "nonfinite"),
    ({"acc": [0.0, float("-inf")]}, "nonfinite"), ({"error_bound": float("nan")}, "nonfinite"),
    ({"pose": [2e4, 0.0, 0.0]}, "out_of_range"), ({"pose": [0.0, 0.0, 7.0]}, "out_of_range"),
    ({"vel": [0.0, -101.0]}, "out_of_range"), ({"acc": [1e3, 0.0]}, "out_of_range"),
    ({"error_bound": -0.1}, "out_of_range"), ({"error_bound": 1e3}, "out_of_range"),
    ({"intent": 64}, "out_of_range"), ({"intent": -1}, "out_of_range"), ({"intent": 1.0}, "invalid"),
])
def test_field_level_rejections(changes, why):
    assert reason(wire(**changes)) == why


def test_missing_key_is_invalid():
    d = wire()
    del d["error_bound"]
    assert reason(d) == "invalid"


def test_estop_reason_length_and_other_types_keys():
    assert reason({"v": 1, "type": "estop", "id": "op", "seq": 1, "t_send_ns": 1, "reason": "r" * 129}) == "invalid"
    assert reason({"v": 1, "type": "ping", "id": "op", "seq": 1, "t_send_ns": 1, "to": "bad id"}) == "invalid"
    assert reason({"v": 1, "type": "pong", "id": "op", "seq": 1, "t_send_ns": 1, "to": "car0"}) == "invalid"


def test_limits_are_configurable():
    tight = Limits(max_speed_mps=5.0)
    assert reason(wire(vel=[6.0, 0.0]), tight) == "out_of_range"
    assert decode(msgpack.packb(wire(vel=[6.0, 0.0])), LIM).vel == (6.0, 0.0)


def test_sender_refuses_invalid_messages_with_the_reason():
    with pytest.raises(ValueError, match="nonfinite"):
        encode(STATE._replace(pose=(math.nan, 0.0, 0.0)), LIM)
    with pytest.raises(ValueError, match="out_of_range"):
        encode(STATE._replace(vel=(500.0, 0.0)), LIM)


@settings(max_examples=150, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats() | st.text(max_size=20),
                    lambda kids: st.lists(kids, max_size=6) | st.dictionaries(st.text(max_size=12), kids, max_size=12),
                    max_leaves=30))
def test_arbitrary_msgpack_values_never_crash(value):
    data = msgpack.packb(value)
    try:
        decode(data, LIM)
    except Rejected as err:
        assert err.reason in REASONS


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="limits.max_age_s"):
        parse_config({"id": "car0", "limits": {"max_age_s": -1}}, V2VConfig)
    with pytest.raises(ConfigError, match="must start with"):
        parse_config({"id": "car0", "peers": {"car1": "udp://x"}}, V2VConfig)
    with pytest.raises(ConfigError, match="own id"):
        parse_config({"id": "car0", "peers": {"car0": "tcp://127.0.0.1:5000"}}, V2VConfig)
    with pytest.raises(ConfigError, match="unknown key 'limits.max_sped_mps'"):
        parse_config({"id": "car0", "limits": {"max_sped_mps": 3}}, V2VConfig)
