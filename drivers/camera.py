"""Cameras off the tick: one reader thread per camera, latest-frame hand-off (`LatestValue`).

A frame source is any blocking callable returning an H×W×3 uint8 array: `SyntheticCamera` (tests, the
emulated arm), or a LeRobot camera's ``async_read`` (it blocks until the camera's own thread has a frame
newer than the last one returned; see `lerobot_camera_source`). The tick calls `latest()`, which never waits:
it returns the newest frame and its capture time, or raises `DriverError` when the camera has stopped
delivering (no frame yet, the source raised, or the newest frame is older than ``max_age_s``).
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional

import numpy as np

from rtctl.drivers.base import DriverError, LatestValue


class CameraReader:
    def __init__(self, source: Callable[[], np.ndarray], name: str = "camera", max_age_s: float = 0.5) -> None:
        self.source, self.name, self.max_age_s = source, name, max_age_s
        self._frame: LatestValue[tuple[np.ndarray, int]] = LatestValue()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.error: Optional[str] = None
        self.frames = 0

    def start(self) -> "CameraReader":
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.name}", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame = self.source()
            except Exception as err:  # a camera that fails says so through latest(), never silently
                self.error = f"{type(err).__name__}: {err}"
                return
            self._frame.put((frame, time.monotonic_ns()))
            self.frames += 1

    def latest(self) -> tuple[np.ndarray, int]:
        """(frame, capture time in monotonic ns); never waits."""
        value, _ = self._frame.get()
        if self.error is not None:
            raise DriverError(f"camera '{self.name}' failed: {self.error}")
        if value is None:
            raise DriverError(f"camera '{self.name}' has delivered no frame yet")
        age_s = (time.monotonic_ns() - value[1]) * 1e-9
        if age_s > self.max_age_s:
            raise DriverError(f"camera '{self.name}': newest frame is {age_s * 1e3:.0f} ms old (limit {self.max_age_s * 1e3:.0f} ms)")
        return value

    def wait_first(self, timeout_s: float = 5.0) -> None:
        """Block (at connect, never in the tick) until the first frame arrived."""
        end = time.monotonic() + timeout_s
        while self._frame.get()[0] is None and self.error is None and time.monotonic() < end:
            time.sleep(0.005)
        self.latest()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)


class SyntheticCamera:
    """A paced frame source: frame k is filled with k mod 256 in channel 0 (so a test can tell frames apart)
    and a moving bar; ``delay_s`` adds a capture latency on top of the frame period."""

    def __init__(self, height: int = 96, width: int = 96, fps: float = 30.0, delay_s: float = 0.0) -> None:
        self.shape, self.period, self.delay_s = (height, width, 3), 1.0 / fps, delay_s
        self.count = 0
        self._next = time.monotonic()

    def __call__(self) -> np.ndarray:
        self._next += self.period
        time.sleep(max(0.0, self._next - time.monotonic()) + self.delay_s)
        frame = np.zeros(self.shape, np.uint8)
        frame[..., 0] = self.count % 256
        frame[:, self.count % self.shape[1], 1] = 255
        self.count += 1
        return frame


def lerobot_camera_source(camera: Any, timeout_ms: float = 1000.0) -> Callable[[], np.ndarray]:
    """A LeRobot `Camera` (connected) as a frame source: ``async_read`` waits for the next new frame."""
    return lambda: camera.async_read(timeout_ms=timeout_ms)
