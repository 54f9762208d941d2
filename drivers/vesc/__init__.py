"""VESC motor controller: UART codec (`codec`), per-car calibration, the serial driver and a pty emulator."""
