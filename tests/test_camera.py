"""Cameras off the tick: a reader thread per camera with latest-frame hand-off."""
import threading
import time

import numpy as np
import pytest

from rtctl.drivers.base import DriverError
from rtctl.drivers.camera import CameraReader, SyntheticCamera, lerobot_camera_source


def test_latest_frame_hand_off_from_a_synthetic_camera():
    cam = CameraReader(SyntheticCamera(48, 64, fps=100.0), "image").start()
    try:
        cam.wait_first()
        first, t1 = cam.latest()
        assert first.shape == (48, 64, 3) and first.dtype == np.uint8
        time.sleep(0.1)
        later, t2 = cam.latest()
        assert t2 > t1 and later[0, 0, 0] != first[0, 0, 0]  # a newer frame replaced the old one
        assert cam.frames >= 2
    finally:
        cam.stop()


def test_latest_never_waits_for_a_slow_camera():
    gate = threading.Event()
    calls = []

    def slow_source():
        calls.append(1)
        if len(calls) > 1:
            gate.wait(5)  # the camera hangs after its first frame
        return np.zeros((4, 4, 3), np.uint8)

    cam = CameraReader(slow_source, "slow", max_age_s=5.0).start()
    try:
        cam.wait_first()
        for _ in range(100):  # returns the stored frame each time although the source is stuck
            frame, _ = cam.latest()
        assert frame.shape == (4, 4, 3) and len(calls) == 2
    finally:
        gate.set()
        cam.stop()


def test_a_stale_or_failed_camera_raises_driver_error():
    hang = threading.Event()
    served = []

    def one_frame_then_hang():
        if served:
            hang.wait(5)
        served.append(1)
        return np.zeros((2, 2, 3), np.uint8)

    cam = CameraReader(one_frame_then_hang, "stale", max_age_s=0.05).start()
    try:
        cam.wait_first()
        time.sleep(0.15)
        with pytest.raises(DriverError, match="old"):
            cam.latest()
    finally:
        hang.set()
        cam.stop()

    def broken():
        raise OSError("USB camera unplugged")
    bad = CameraReader(broken, "wrist").start()
    with pytest.raises(DriverError, match="camera 'wrist' failed: OSError: USB camera unplugged"):
        bad.wait_first()
    bad.stop()
    with pytest.raises(DriverError, match="no frame yet"):
        CameraReader(lambda: None, "idle").latest()


def test_lerobot_camera_async_read_as_a_source():
    class FakeLeRobotCamera:  # the async_read(timeout_ms) contract of lerobot.cameras.Camera
        def __init__(self):
            self.timeouts = []

        def async_read(self, timeout_ms=200.0):
            self.timeouts.append(timeout_ms)
            time.sleep(0.01)
            return np.full((8, 8, 3), 7, np.uint8)

    fake = FakeLeRobotCamera()
    cam = CameraReader(lerobot_camera_source(fake, timeout_ms=300), "front").start()
    try:
        cam.wait_first()
        assert cam.latest()[0][0, 0, 0] == 7 and fake.timeouts[0] == 300
    finally:
        cam.stop()
