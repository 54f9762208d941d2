"""Road geometry of the car scenarios: every car lives in the road coordinates of one *path*.

A path is a straight or curved multi-lane road; a car's (s, y, ψ) are along it (see `dynamics`). The
highway and the oval have one path; the 4-way intersection has four one-lane paths (eastbound, northbound,
westbound, southbound), straight through, crossing at the origin. `to_world` maps road coordinates to the
world frame (x, y, yaw) for plots, collision checks and a trial's motion-capture frame.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Track:
    kind: str  # "straight" | "oval" | "cross"
    n_lanes: int
    lane_width: float = 0.6
    length: float = 40.0  # straight: road length; cross: each path's length
    straight: float = 8.0  # oval: length of each straight
    radius: float = 2.5  # oval: radius of the inner (left) road edge on the bends

    @property
    def width(self) -> float:
        return self.n_lanes * self.lane_width

    @property
    def n_paths(self) -> int:
        return 4 if self.kind == "cross" else 1

    @property
    def period(self) -> float:
        """Lap length of the oval's reference line (its inner edge); 0 for open roads."""
        return 2.0 * self.straight + 2.0 * math.pi * self.radius if self.kind == "oval" else 0.0

    @property
    def y_ref(self) -> float:
        """Lateral position of the reference line s is measured along (oval: the inner edge, so a gap in s
        is never larger than the real gap in any lane)."""
        return self.width if self.kind == "oval" else 0.0

    def lane_centre(self, lane):
        return (np.asarray(lane) + 0.5) * self.lane_width

    def lane_of(self, y):
        return np.clip(np.floor(np.asarray(y) / self.lane_width), 0, self.n_lanes - 1).astype(int)

    def kappa_ref(self, s):
        """Curvature of the reference line at arc length s (oval bends: 1/radius; elsewhere 0)."""
        if self.kind != "oval":
            return np.zeros(np.shape(s))
        u = np.mod(s, self.period)
        arc = math.pi * self.radius
        on_bend = ((u >= self.straight) & (u < self.straight + arc)) | (u >= 2 * self.straight + arc)
        return np.where(on_bend, 1.0 / self.radius, 0.0)

    def kappa_at(self, s, y):
        """Road curvature felt by a car at (s, y): what it must steer just to follow its lane."""
        k = self.kappa_ref(s)
        return k / (1.0 - k * (np.asarray(y) - self.y_ref))

    def wrap(self, ds):
        """Signed s difference on a periodic track (nearest way round)."""
        P = self.period
        return ds if P == 0.0 else np.mod(np.asarray(ds) + 0.5 * P, P) - 0.5 * P

    # -- world frame --------------------------------------------------------------------------------------
    def to_world(self, path, s, y, psi):
        path = np.asarray(path)
        s, y, psi = (np.asarray(a, dtype=float) for a in (s, y, psi))
        if self.kind == "straight":
            return s, y, psi
        if self.kind == "cross":
            base, u, n = _cross_frames(self)
            bx, by = base[path, 0], base[path, 1]
            return (bx + s * u[path, 0] + y * n[path, 0], by + s * u[path, 1] + y * n[path, 1],
                    psi + np.arctan2(u[path, 1], u[path, 0]))
        # oval, anticlockwise: bottom straight (+x), right bend, top straight (−x), left bend
        L, R, arc = self.straight, self.radius, math.pi * self.radius
        u = np.mod(s, self.period)
        seg = np.select([u < L, u < L + arc, u < 2 * L + arc], [0, 1, 2], 3)
        t = u - np.choose(seg, [0.0, L, L + arc, 2 * L + arc])
        theta = np.choose(seg, [0.0, t / R, math.pi, math.pi + t / R])
        rx = np.choose(seg, [-0.5 * L + t, 0.5 * L + R * np.sin(t / R), 0.5 * L - t, -0.5 * L - R * np.sin(t / R)])
        ry = np.choose(seg, [-R + 0 * t, -R * np.cos(t / R), R + 0 * t, R * np.cos(t / R)])
        out = self.width - y  # outwards (to the right) of the inner edge
        return rx + out * np.sin(theta), ry - out * np.cos(theta), theta + psi

    def to_road(self, path, x, y, yaw):
        """Inverse of `to_world` (a pose source's world frame → road coordinates); s within one lap."""
        path = np.asarray(path)
        x, y, yaw = (np.asarray(a, dtype=float) for a in (x, y, yaw))
        if self.kind == "straight":
            return x, y, yaw
        if self.kind == "cross":
            base, u, n = _cross_frames(self)
            dx, dy = x - base[path, 0], y - base[path, 1]
            return (dx * u[path, 0] + dy * u[path, 1], dx * n[path, 0] + dy * n[path, 1],
                    _wrap_angle(yaw - np.arctan2(u[path, 1], u[path, 0])))
        L, R = self.straight, self.radius
        right, left = x > 0.5 * L, x < -0.5 * L
        tau_r = np.arctan2(x - 0.5 * L, -y)  # angle travelled on the right bend, 0..π
        tau_l = np.arctan2(-(x + 0.5 * L), y)
        s = np.select([right, left, y < 0], [L + R * tau_r, 2 * L + np.pi * R + R * tau_l, x + 0.5 * L],
                      L + np.pi * R + (0.5 * L - x))
        out = np.select([right, left, y < 0], [np.hypot(x - 0.5 * L, y) - R, np.hypot(x + 0.5 * L, y) - R, -R - y],
                        y - R)
        theta = np.select([right, left, y < 0], [tau_r, np.pi + tau_l, 0.0 * x], np.pi + 0.0 * x)
        return s, self.width - out, _wrap_angle(yaw - theta)

    def zones(self):
        """Conflict zones of crossing paths: (P, P) arrays zone_s[p, q] = where path p enters path q's lane
        (NaN where they do not cross), and the zone's length along p (one lane width)."""
        P = self.n_paths
        zs = np.full((P, P), np.nan)
        if self.kind != "cross":
            return zs, self.lane_width
        base, u, n = _cross_frames(self)
        for p in range(P):
            for q in range(P):
                if abs(float(u[p] @ u[q])) < 1e-9:  # perpendicular
                    ends = [(base[q] + k * n[q] - base[p]) @ u[p] for k in (0.0, self.lane_width)]
                    zs[p, q] = min(ends)
        return zs, self.lane_width


def _cross_frames(track: Track):
    """Right-edge start point, direction and left normal of the four intersection paths."""
    a, w = 0.5 * track.length, track.lane_width
    base = np.array([[-a, -w], [w, -a], [a, w], [-w, a]])
    u = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    n = np.stack((-u[:, 1], u[:, 0]), axis=1)
    return base, u, n


def _wrap_angle(a):
    return np.mod(a + np.pi, 2.0 * np.pi) - np.pi
