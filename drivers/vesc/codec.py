"""VESC UART protocol: packet framing, CRC, and the commands a car needs. Pure Python, no I/O.

Written from the VESC firmware sources (vedderb/bldc), not from the 2017 PyPI `pyvesc`:

* Framing, `comm/packet.c` (`packet_send_packet`, `try_decode_packet`): start byte 2 + one length byte for a
  payload of 1..255 bytes, start byte 3 + two big-endian length bytes for 256..65535 (a 16-bit length below
  255 is invalid), then the payload, its CRC16 big-endian, and stop byte 3. The receiver slides one byte
  forward past any invalid structure (bad start, zero length, bad stop byte, CRC mismatch) and retries.
* CRC: `crc16` in `util/crc.c` — CRC-16/CCITT in its XMODEM form (polynomial 0x1021, initial value 0, no
  reflection, no final xor), over the payload only.
* Command ids, `datatypes.h` `COMM_PACKET_ID` (firmware ≥ 3.x, which has COMM_SET_HANDBRAKE = 10).
* Payloads, `comm/commands.c` `commands_process_packet`: every number is big-endian; "float16/float32 with
  scale" are int16/int32 of value × scale (`buffer_append_float16/32`), not IEEE floats.
  SET_DUTY int32 duty × 1e5; SET_CURRENT and SET_CURRENT_BRAKE int32 A × 1e3; SET_RPM int32 ERPM;
  SET_SERVO_POS int16 position (0..1) × 1e3; ALIVE no payload (only resets the firmware's command timeout).
* COMM_GET_VALUES reply (mask 0xFFFFFFFF): temp_fet f16/1e1, temp_motor f16/1e1, avg_motor_current f32/1e2,
  avg_input_current f32/1e2, avg_id f32/1e2, avg_iq f32/1e2, duty_now f16/1e3, rpm f32/1e0,
  v_in f16/1e1, amp_hours f32/1e4, amp_hours_charged f32/1e4, watt_hours f32/1e4, watt_hours_charged
  f32/1e4, tachometer int32, tachometer_abs int32, fault_code u8, pid_pos_now f32/1e6, controller_id u8,
  temp_mos1..3 f16/1e1, avg_vd f32/1e3, avg_vq f32/1e3, status u8. Older firmware stops earlier; the parser
  reads every field the reply holds and requires the fields up to `fault_code`.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, fields

START_SHORT = 0x02
START_LONG = 0x03
STOP = 0x03
MAX_PAYLOAD = 512  # PACKET_MAX_PL_LEN of the firmware's UART packet handler

COMM_GET_VALUES = 4
COMM_SET_DUTY = 5
COMM_SET_CURRENT = 6
COMM_SET_CURRENT_BRAKE = 7
COMM_SET_RPM = 8
COMM_SET_SERVO_POS = 12
COMM_ALIVE = 30

_CRC_TABLE = []
for _i in range(256):
    _c = _i << 8
    for _ in range(8):
        _c = ((_c << 1) ^ 0x1021) if _c & 0x8000 else (_c << 1)
    _CRC_TABLE.append(_c & 0xFFFF)


class VescProtocolError(ValueError):
    """A payload that cannot be what it claims (wrong length, unknown command, value out of range)."""


def crc16(data: bytes) -> int:
    """CRC-16/XMODEM of `data` (check value of b"123456789" is 0x31C3)."""
    crc = 0
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[((crc >> 8) ^ b) & 0xFF]
    return crc


def frame(payload: bytes) -> bytes:
    """Payload -> one packet on the wire."""
    n = len(payload)
    if not 1 <= n <= MAX_PAYLOAD:
        raise VescProtocolError(f"VESC payload of {n} bytes; allowed 1..{MAX_PAYLOAD}")
    head = bytes((START_SHORT, n)) if n <= 255 else bytes((START_LONG, n >> 8, n & 0xFF))
    return head + payload + crc16(payload).to_bytes(2, "big") + bytes((STOP,))


class FrameDecoder:
    """Byte stream -> payloads, resynchronising like the firmware; counts what it had to skip.

    `crc_errors` counts packets whose structure was right but whose CRC was not (the usual sign of line noise
    or a wrong baud rate); `skipped` counts bytes dropped while searching for a start byte.
    """

    def __init__(self, max_payload: int = MAX_PAYLOAD) -> None:
        self.max_payload = max_payload
        self._buf = bytearray()
        self.crc_errors = 0
        self.skipped = 0

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        out: list[bytes] = []
        buf = self._buf
        while buf:
            res = self._try(buf)
            if res is None:  # need more bytes
                break
            if res == -1:
                del buf[0]
                self.skipped += 1
                continue
            payload, used = res
            out.append(payload)
            del buf[:used]
        return out

    def _try(self, buf: bytearray):
        start = buf[0]
        if start not in (START_SHORT, START_LONG):
            return -1
        head = 2 if start == START_SHORT else 3
        if len(buf) < head:
            return None
        n = buf[1] if start == START_SHORT else (buf[1] << 8) | buf[2]
        if n < 1 or (start == START_LONG and n < 255) or n > self.max_payload:
            return -1
        total = head + n + 3
        if len(buf) < total:
            return None
        if buf[total - 1] != STOP:
            return -1
        payload = bytes(buf[head:head + n])
        if crc16(payload) != int.from_bytes(buf[head + n:head + n + 2], "big"):
            self.crc_errors += 1
            return -1
        return payload, total


# -- commands (host -> VESC) ------------------------------------------------------------------------------------
def _i32(x: float, what: str) -> int:
    v = int(round(x))
    if not -2**31 <= v < 2**31:
        raise VescProtocolError(f"{what} {x!r} does not fit the int32 field")
    return v


def set_duty(duty: float) -> bytes:
    if not -1.0 <= duty <= 1.0:
        raise VescProtocolError(f"duty {duty!r} outside [-1, 1]")
    return struct.pack(">Bi", COMM_SET_DUTY, _i32(duty * 1e5, "duty"))


def set_current(amps: float) -> bytes:
    return struct.pack(">Bi", COMM_SET_CURRENT, _i32(amps * 1e3, "current"))


def set_current_brake(amps: float) -> bytes:
    if amps < 0:
        raise VescProtocolError(f"brake current {amps!r} must be ≥ 0 (the firmware brakes with its magnitude)")
    return struct.pack(">Bi", COMM_SET_CURRENT_BRAKE, _i32(amps * 1e3, "brake current"))


def set_rpm(erpm: float) -> bytes:
    return struct.pack(">Bi", COMM_SET_RPM, _i32(erpm, "erpm"))


def set_servo_pos(pos: float) -> bytes:
    if not 0.0 <= pos <= 1.0:
        raise VescProtocolError(f"servo position {pos!r} outside [0, 1]")
    return struct.pack(">Bh", COMM_SET_SERVO_POS, int(round(pos * 1e3)))


def get_values() -> bytes:
    return bytes((COMM_GET_VALUES,))


def alive() -> bytes:
    return bytes((COMM_ALIVE,))


def parse_command(payload: bytes) -> tuple[int, float | None]:
    """A host command payload -> (command id, value in SI: duty, A, ERPM, servo 0..1; None without a value).
    Used by the emulator; raises VescProtocolError on a wrong length or an unknown id."""
    cmd = payload[0]
    body = payload[1:]
    scale = {COMM_SET_DUTY: 1e5, COMM_SET_CURRENT: 1e3, COMM_SET_CURRENT_BRAKE: 1e3, COMM_SET_RPM: 1.0}
    if cmd in scale:
        if len(body) != 4:
            raise VescProtocolError(f"command {cmd} needs a 4-byte value, got {len(body)} bytes")
        return cmd, struct.unpack(">i", body)[0] / scale[cmd]
    if cmd == COMM_SET_SERVO_POS:
        if len(body) != 2:
            raise VescProtocolError(f"COMM_SET_SERVO_POS needs 2 bytes, got {len(body)}")
        return cmd, struct.unpack(">h", body)[0] / 1e3
    if cmd in (COMM_GET_VALUES, COMM_ALIVE):
        return cmd, None
    raise VescProtocolError(f"unsupported VESC command id {cmd}")


# -- COMM_GET_VALUES reply (VESC -> host) -----------------------------------------------------------------------
@dataclass(frozen=True)
class VescValues:
    temp_fet: float = 0.0  # °C
    temp_motor: float = 0.0
    avg_motor_current: float = 0.0  # A
    avg_input_current: float = 0.0
    avg_id: float = 0.0
    avg_iq: float = 0.0
    duty_now: float = 0.0  # -1..1
    rpm: float = 0.0  # electrical RPM
    v_in: float = 0.0  # V
    amp_hours: float = 0.0
    amp_hours_charged: float = 0.0
    watt_hours: float = 0.0
    watt_hours_charged: float = 0.0
    tachometer: int = 0  # commutation steps (6 × pole pairs per revolution for BLDC)
    tachometer_abs: int = 0
    fault_code: int = 0  # mc_fault_code, 0 = none
    pid_pos_now: float = 0.0  # deg
    controller_id: int = 0
    temp_mos1: float = 0.0
    temp_mos2: float = 0.0
    temp_mos3: float = 0.0
    avg_vd: float = 0.0
    avg_vq: float = 0.0
    status: int = 0  # bit 0: firmware command timeout active, bit 1: kill switch


# (struct code, scale) in reply order; scale None = integer as is
_VALUE_LAYOUT = (
    ("h", 1e1), ("h", 1e1), ("i", 1e2), ("i", 1e2), ("i", 1e2), ("i", 1e2), ("h", 1e3), ("i", 1e0),
    ("h", 1e1), ("i", 1e4), ("i", 1e4), ("i", 1e4), ("i", 1e4), ("i", None), ("i", None), ("B", None),
    ("i", 1e6), ("B", None), ("h", 1e1), ("h", 1e1), ("h", 1e1), ("i", 1e3), ("i", 1e3), ("B", None),
)
_NAMES = tuple(f.name for f in fields(VescValues))
_REQUIRED = _NAMES.index("fault_code") + 1


def encode_values(v: VescValues) -> bytes:
    out = bytearray((COMM_GET_VALUES,))
    for name, (code, scale) in zip(_NAMES, _VALUE_LAYOUT):
        x = getattr(v, name)
        out += struct.pack(">" + code, int(round(x * scale)) if scale else int(x))
    return bytes(out)


def parse_values(payload: bytes) -> VescValues:
    """A COMM_GET_VALUES reply payload (command byte first) -> VescValues."""
    if not payload or payload[0] != COMM_GET_VALUES:
        raise VescProtocolError(f"not a COMM_GET_VALUES reply (first byte {payload[:1].hex() or 'none'})")
    got, off = {}, 1
    for i, (name, (code, scale)) in enumerate(zip(_NAMES, _VALUE_LAYOUT)):
        size = struct.calcsize(code)
        if off + size > len(payload):
            if i < _REQUIRED:
                raise VescProtocolError(f"COMM_GET_VALUES reply of {len(payload)} bytes ends before {name}")
            break
        (raw,) = struct.unpack_from(">" + code, payload, off)
        got[name] = raw / scale if scale else raw
        off += size
    return VescValues(**got)
