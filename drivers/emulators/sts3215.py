"""One Feetech STS3215 servo: its register table, sign-magnitude fields and first-order joint dynamics.

The register map is the STS/SMS control table lerobot 0.4.4 uses (`lerobot.motors.feetech.tables`,
checked equal by the tests); it is copied so the emulator process does not import lerobot (which pulls
torch: ~10 s). Position conventions follow the servo and lerobot's comments:
``Present_Position = (actual - Homing_Offset) mod 4096`` and a goal is reached at ``Goal_Position +
Homing_Offset``, clamped to [Min_Position_Limit, Max_Position_Limit] when that range is non-empty.
Torque off: the joint stays where it is and Goal_Position follows it, so enabling torque holds the pose
instead of jumping to a stale goal (what a real servo does). A push (`Servo.push`, a hand moving and
holding the joint) sets the joint off by an offset and keeps it there whatever the goal; on release the
servo tracks its goal again from where the hand left it.
"""
from __future__ import annotations

import math
import time
from typing import Optional

MODEL_NUMBER_STS3215 = 777
FIRMWARE = (3, 10)
RESOLUTION = 4096

# name: (address, size in bytes)
CONTROL_TABLE = {
    "Firmware_Major_Version": (0, 1), "Firmware_Minor_Version": (1, 1), "Model_Number": (3, 2),
    "ID": (5, 1), "Baud_Rate": (6, 1), "Return_Delay_Time": (7, 1), "Response_Status_Level": (8, 1),
    "Min_Position_Limit": (9, 2), "Max_Position_Limit": (11, 2), "Max_Temperature_Limit": (13, 1),
    "Max_Voltage_Limit": (14, 1), "Min_Voltage_Limit": (15, 1), "Max_Torque_Limit": (16, 2), "Phase": (18, 1),
    "Unloading_Condition": (19, 1), "LED_Alarm_Condition": (20, 1), "P_Coefficient": (21, 1),
    "D_Coefficient": (22, 1), "I_Coefficient": (23, 1), "Minimum_Startup_Force": (24, 2),
    "CW_Dead_Zone": (26, 1), "CCW_Dead_Zone": (27, 1), "Protection_Current": (28, 2),
    "Angular_Resolution": (30, 1), "Homing_Offset": (31, 2), "Operating_Mode": (33, 1),
    "Protective_Torque": (34, 1), "Protection_Time": (35, 1), "Overload_Torque": (36, 1),
    "Velocity_closed_loop_P_proportional_coefficient": (37, 1), "Over_Current_Protection_Time": (38, 1),
    "Velocity_closed_loop_I_integral_coefficient": (39, 1),
    "Torque_Enable": (40, 1), "Acceleration": (41, 1), "Goal_Position": (42, 2), "Goal_Time": (44, 2),
    "Goal_Velocity": (46, 2), "Torque_Limit": (48, 2), "Lock": (55, 1), "Present_Position": (56, 2),
    "Present_Velocity": (58, 2), "Present_Load": (60, 2), "Present_Voltage": (62, 1),
    "Present_Temperature": (63, 1), "Status": (65, 1), "Moving": (66, 1), "Present_Current": (69, 2),
    "Goal_Position_2": (71, 2),
    "Moving_Velocity": (80, 1), "Moving_Velocity_Threshold": (80, 1), "DTs": (81, 1),
    "Velocity_Unit_factor": (82, 1), "Hts": (83, 1), "Maximum_Velocity_Limit": (84, 1),
    "Maximum_Acceleration": (85, 1), "Acceleration_Multiplier ": (86, 1),
}
SIGN_BITS = {"Present_Load": 10, "Homing_Offset": 11, "Goal_Position": 15, "Goal_Velocity": 15,
             "Present_Position": 15, "Present_Velocity": 15}
READ_ONLY = range(56, 80)  # Present_* and status registers: writes there are ignored
ERRBIT_INSTRUCTION = 0x40  # bit 6 is "instruction error" on Feetech/Dynamixel-1 status packets

# Factory defaults a fresh STS3215 reports (values lerobot reads or overwrites in connect/configure).
DEFAULTS = {
    "Firmware_Major_Version": FIRMWARE[0], "Firmware_Minor_Version": FIRMWARE[1],
    "Model_Number": MODEL_NUMBER_STS3215, "Baud_Rate": 0, "Return_Delay_Time": 250, "Response_Status_Level": 1,
    "Min_Position_Limit": 0, "Max_Position_Limit": RESOLUTION - 1, "Max_Temperature_Limit": 70,
    "Max_Voltage_Limit": 80, "Min_Voltage_Limit": 40, "Max_Torque_Limit": 1000, "P_Coefficient": 32,
    "D_Coefficient": 32, "I_Coefficient": 0, "Protection_Current": 500, "Angular_Resolution": 1,
    "Protective_Torque": 20, "Protection_Time": 200, "Overload_Torque": 80, "Torque_Limit": 1000,
    "Present_Voltage": 74, "Present_Temperature": 30, "Maximum_Acceleration": 0, "Lock": 1,
}


def encode_sign_magnitude(value: int, bit: int) -> int:
    return (abs(value) | (1 << bit)) if value < 0 else value


def decode_sign_magnitude(raw: int, bit: int) -> int:
    return -(raw & ((1 << bit) - 1)) if raw & (1 << bit) else raw


class Servo:
    """Registers plus joint state (``actual`` in encoder ticks, float), integrated lazily on every access."""

    def __init__(self, servo_id: int, actual: float = 2047.0, tau_s: float = 0.05, v_max: float = 3000.0,
                 clock=time.monotonic) -> None:
        self.mem = bytearray(256)
        self.clock = clock
        for name, value in DEFAULTS.items():
            self.set(name, value)
        self.set("ID", servo_id)
        self.tau_s, self.v_max = tau_s, v_max  # first-order time constant; speed limit in ticks/s
        self.actual = float(actual)
        self.velocity = 0.0
        self.pushed_until: Optional[float] = None  # clock time a hand releases the joint; None: not pushed
        self._t = clock()
        self._publish()
        self.set("Goal_Position", self.get("Present_Position"))

    @property
    def id(self) -> int:
        return self.mem[5]

    # -- typed register access ------------------------------------------------------------------------
    def get(self, name: str) -> int:
        addr, size = CONTROL_TABLE[name]
        raw = int.from_bytes(self.mem[addr:addr + size], "little")
        return decode_sign_magnitude(raw, SIGN_BITS[name]) if name in SIGN_BITS else raw

    def set(self, name: str, value: int) -> None:
        addr, size = CONTROL_TABLE[name]
        raw = encode_sign_magnitude(int(value), SIGN_BITS[name]) if name in SIGN_BITS else int(value)
        self.mem[addr:addr + size] = (raw & ((1 << (8 * size)) - 1)).to_bytes(size, "little")

    # -- bus-facing access (what READ / WRITE packets do) ---------------------------------------------
    def read(self, addr: int, length: int) -> bytes:
        self.update()
        return bytes(self.mem[addr:addr + length])

    def write(self, addr: int, data: bytes) -> int:
        """Apply a WRITE; returns the status error byte (0 = ok)."""
        if addr + len(data) > len(self.mem) or addr < 0:
            return ERRBIT_INSTRUCTION
        self.update()
        torque_before = self.get("Torque_Enable")
        writable = [(a, b) for a, b in zip(range(addr, addr + len(data)), data) if a not in READ_ONLY]
        for a, b in writable:
            self.mem[a] = b
        if torque_before == 0 and self.get("Torque_Enable") == 1:
            self.set("Goal_Position", self.get("Present_Position"))  # hold where it is
        if addr <= 43 and addr + len(data) > 42:
            lo, hi = self.get("Min_Position_Limit"), self.get("Max_Position_Limit")
            if hi > lo:
                self.set("Goal_Position", min(hi, max(lo, self.get("Goal_Position"))))
        return 0

    # -- dynamics ---------------------------------------------------------------------------------------
    def push(self, offset_ticks: float, duration_s: float) -> None:
        """A hand moves the joint ``offset_ticks`` from where it is now and holds it there for ``duration_s``."""
        self.update()
        self.actual += offset_ticks
        self.pushed_until = self._t + duration_s
        self._publish()

    def update(self, now: Optional[float] = None) -> None:
        now = self.clock() if now is None else now
        if self.pushed_until is not None:
            if now < self.pushed_until:  # held by the hand: Present_Position stays put whatever the goal
                self._t, self.velocity = now, 0.0
                self._publish()
                if self.get("Torque_Enable") == 0:
                    self.set("Goal_Position", self.get("Present_Position"))
                return
            self._t, self.pushed_until = max(self._t, self.pushed_until), None  # released: track from then on
        dt = max(0.0, now - self._t)
        self._t = now
        x0 = self.actual
        if dt > 0 and self.get("Torque_Enable") == 1 and self.get("Operating_Mode") == 0:
            target = self.get("Goal_Position") + self.get("Homing_Offset")
            step = (target - x0) * (1.0 - math.exp(-dt / self.tau_s))
            limit = self.v_max * dt
            self.actual = x0 + max(-limit, min(limit, step))
        self.velocity = (self.actual - x0) / dt if dt > 0 else 0.0
        self._publish()
        if self.get("Torque_Enable") == 0:
            self.set("Goal_Position", self.get("Present_Position"))

    def _publish(self) -> None:
        present = int(round(self.actual - self.get("Homing_Offset"))) % RESOLUTION
        self.set("Present_Position", present)
        self.set("Present_Velocity", int(round(self.velocity)))
        self.set("Moving", int(abs(self.velocity) > 1.0))
