"""Barrier rows of the vehicle shield, each an affine condition  ca·a + ck·κ ≥ rhs  on the input (a, κ).

Plain arithmetic on floats or numpy arrays: the per-call path feeds floats, `filter_batch` feeds arrays.
Every function returns (ca, ck, rhs, h) with h the barrier value now (already tightened by its margin).

Gap barrier (speed-dependent stopping distance, research note §3), front neighbour f:
    h = gap − d0 − ε₁v − (v²/(2b) − v_f²/(2b_f))⁺
The ⁺ is a fix to the lab's form (gap − d0 − ε₁v − v²/(2b) + v_f²/(2b_f)), whose h ≥ 0 allows the bodies
to overlap when the front car is much faster; with it, h is the smallest future gap (less d0 + ε₁v)
when both cars brake fully. The front car's worst case is full braking, which never lowers h, and its
stopping point never moves back, so an old message about it needs no age margin (only its measurement
error). The ego's one-tick h⁺(a) is concave in a; its chord over [a_lo, a_hi] is a lower bound, exact at
a_lo = −b (full braking raises h by ε₁ b dt: always feasible when h ≥ 0). a_lo is clamped to −v/dt (a
car stops, it does not reverse) so the one-tick model stays exact.
Rear neighbour r (ego is its front car): same h with roles swapped; the ego's change is convex in a, so a
tangent bounds it from below; the pair's budget is shared (Wang–Ames): the ego provides `share` of what
the drift leaves missing.
Lateral (road/lane edges, discrete): barrier on the front point y_f = y + f_e sin ψ, h = Y − y_f. Steering
acts on it at relative degree 1 (ẏ_f = v sin ψ + f_e cos ψ v κ) and turning back at full lock never
moves it outwards while |ψ| ≤ atan(f_e κ_max) (the heading bound `kappa_box` keeps). The rear axle then
never passes Y either (it is below the front point while heading out, and moves inwards otherwise), and
the rear corner swings out at most √(r_e² + (R + w/2)²) − (R + w/2) beyond it (R = 1/κ_max), which is
subtracted from Y. One-tick motion: arc Taylor remainders and the a·κ cross term are spelled out below.
"""
from __future__ import annotations

import numpy as np

from .barriers import continuous_row, discrete_row, hocbf_row


def _pos(x):
    return 0.5 * (x + abs(x))


def front_row(gap, v, vf, bf, k, a_lo, a_hi, margin):
    """k: a `RowConsts`. gap = obstacle rear bumper − ego front bumper (m)."""
    b, dt = k.brake, k.dt
    h = gap - k.d0 - k.eps1 * v - _pos(v * v / (2.0 * b) - vf * vf / (2.0 * bf)) - margin
    if k.continuous:
        # ḣ with the front car braking at b_f (its worst case): −v − (ε₁ + v/b)·a while the stopping
        # term is active, v_f − v − ε₁a otherwise; +½dt: the tick's extra ½a dt² of travel
        on = v * v / (2.0 * b) > vf * vf / (2.0 * bf)
        ca, rhs = continuous_row(h, on * -v + (1 - on) * (vf - v),
                                 -(k.eps1 + on * v / b + 0.5 * dt), k.alpha)
        return ca, 0.0 * ca, rhs, h
    # worst case for the front car: full braking (least travel, lowest speed)
    vf_end = _pos(vf - bf * dt)
    d_front = (vf + vf_end) * 0.5 * (vf - vf_end) / bf

    def h_next(a):  # exact one-tick prediction for the ego's a (speed stays ≥ 0 since a ≥ −v/dt)
        ve = v + a * dt
        return (gap + d_front - v * dt - 0.5 * a * dt * dt - k.d0 - k.eps1 * ve
                - _pos(ve * ve / (2.0 * b) - vf_end * vf_end / (2.0 * bf)) - margin)

    lo, hi = h_next(a_lo), h_next(a_hi)  # h_next is concave in a: the chord bounds it from below
    slope = (hi - lo) / (a_hi - a_lo + 1e-12)
    ca, rhs = discrete_row(h, lo - slope * a_lo, slope, k.gamma)
    return ca, 0.0 * ca, rhs, h


def rear_row(gap, v, cospsi, vr, ar, br, share, a_t, k, margin):
    """gap = ego rear bumper − rear car's front bumper. vr, ar: the rear car's (age-advanced) speed and the
    acceleration assumed for it; share: the ego's part of the pair's budget (1 = all of it)."""
    b, dt = k.brake, k.dt
    vl = v * cospsi
    h = gap - k.d0 - k.eps1 * vr - vr * vr / (2.0 * br) + vl * vl / (2.0 * b) - margin
    c = cospsi * cospsi * dt * dt / (2.0 * b)
    ke = cospsi * 0.5 * dt * dt + cospsi * cospsi * v * dt / b
    d_rear = -(vr * dt + 0.5 * ar * dt * dt) - k.eps1 * ar * dt - (2.0 * vr * ar * dt + ar * ar * dt * dt) / (2.0 * br)
    ca = ke + 2.0 * c * a_t
    rhs = share * (-k.gamma * h - vl * dt - d_rear) + c * a_t * a_t
    # reported value: the follower's own front barrier (⁺ form, see front_row); it is ≤ the smooth h above
    h_follow = gap - k.d0 - k.eps1 * vr - _pos(vr * vr / (2.0 * br) - vl * vl / (2.0 * b)) - margin
    return ca, 0.0 * ca, rhs, h_follow


def lateral_row(Y, y, sinpsi, cospsi, v, a_lo, a_hi, k):
    """Upper edge: keep the body below the edge, Y = edge − half width − margin − rear swing-out.
    For the lower edge call with (−Y_lo, −y, −sin ψ, cos ψ) and negate ck (mirror image).

    Returns two rows (as a pair of (ca, ck, rhs, h)): the one-tick remainder terms are all ≤ D·|κ|, and
    D|κ| = max(Dκ, −Dκ), so requiring the linear model minus ±Dκ twice is exact and costs nothing when
    driving straight (a single worst-case constant would eat the lane at 3 m/s and 10 Hz)."""
    if k.continuous:
        # HOCBF on the rear-axle point: ḣ = −v sin ψ, ḧ = −a sin ψ − v² cos ψ κ
        h = Y - y
        (ca, ck), rhs = hocbf_row(h, -v * sinpsi, 0.0, (-sinpsi, -v * v * cospsi), k.alpha1, k.alpha2)
        return (ca, ck, rhs, h), (ca, ck, rhs, h)
    dt, km, f = k.dt, k.kappa_max, k.front
    h = Y - y - f * sinpsi
    s0 = v * dt  # distance this tick is s0 + ½a dt², a ∈ [a_lo, a_hi]
    smax = s0 + 0.25 * (a_hi + abs(a_hi)) * dt * dt
    ds = 0.25 * (abs(a_lo) + abs(a_hi) + abs(abs(a_lo) - abs(a_hi))) * dt * dt  # max |½a dt²|
    # y⁺ ≤ y + s sin ψ + ½s² cos ψ κ + s³κ²/6 ;  f sin ψ⁺ ≤ f sin ψ + f cos ψ sκ + ½f s²κ² ; s = s0 ± ds
    d = smax ** 3 * km / 6.0 + 0.5 * f * smax * smax * km + (0.5 * (s0 + smax) + f) * ds
    ca, rhs = discrete_row(h, h - s0 * sinpsi, -0.5 * dt * dt * sinpsi, k.gamma)
    ck = -(0.5 * s0 * s0 + f * s0) * cospsi
    return (ca, ck - d, rhs, h), (ca, ck + d, rhs, h)


def kappa_box(psi, v, a_lo, a_hi, k):
    """Curvature bounds: steering lock, and the heading bound |ψ| ≤ ψ_max as a discrete-time barrier
    (ψ⁺ = ψ + sκ with s the distance of this tick)."""
    km, dt = k.kappa_max, k.dt
    smax = v * dt + 0.25 * (a_hi + abs(a_hi)) * dt * dt
    smin = _max(v * dt + 0.5 * a_lo * dt * dt, 1e-9)
    up = k.gamma * (k.psi_max - psi)
    dn = k.gamma * (k.psi_max + psi)
    big = smax > 1e-9
    hi = _where(big, _where(up >= 0, up / _max(smax, 1e-9), up / smin), km)
    lo = _where(big, _where(dn >= 0, -dn / _max(smax, 1e-9), -dn / smin), -km)
    hi, lo = _clip(hi, -km, km), _clip(lo, -km, km)
    return _min(lo, hi), hi


def accel_box(v, k):
    """Acceleration bounds: braking down to a stop within the tick (no reversing: the row models are
    exact only down to v = 0), acceleration up to the speed limit."""
    lo = _max(-k.brake, -v / k.dt)
    return lo, _max(_min(k.accel, (k.speed_max - v) / k.dt), lo)


def _where(c, x, y):
    return np.where(c, x, y) if isinstance(c, np.ndarray) else (x if c else y)


def _clip(x, lo, hi):
    return np.clip(x, lo, hi) if isinstance(x, np.ndarray) else min(max(x, lo), hi)


def _min(x, y):
    return np.minimum(x, y) if isinstance(x, np.ndarray) or isinstance(y, np.ndarray) else min(x, y)


def _max(x, y):
    return np.maximum(x, y) if isinstance(x, np.ndarray) or isinstance(y, np.ndarray) else max(x, y)


def lanes_spanned(y, sinpsi, k):
    """Lowest and highest lane index the body overlaps (rear-axle lateral position y, heading ψ: the front
    corners reach f·sin ψ further, the rear ones −r·sin ψ)."""
    odd = 0.5 * (k.front - k.rear) * sinpsi
    even = 0.5 * (k.front + k.rear) * abs(sinpsi)
    lo = (y - k.half_width + odd - even) // k.lane_width
    hi = (y + k.half_width + odd + even) // k.lane_width
    top = k.n_lanes - 1
    return _clip(lo, 0, top), _clip(hi, 0, top)


def lane_spans(occ_lo, occ_hi, target):
    """(occupied, swept to the target, swept widened by the lane beyond the target) lane ranges."""
    ext = (_min(occ_lo, target), _max(occ_hi, target))
    wide = (ext[0] - (target < occ_lo), ext[1] + (target > occ_hi))
    return (occ_lo, occ_hi), ext, wide


def lateral_rows(y, sinpsi, cospsi, v, a_lo, a_hi, lane_lo, lane_hi, k):
    """The four rows keeping the body inside lanes lane_lo..lane_hi: two for the upper (left) edge, two
    for the lower (right) edge."""
    inset = k.half_width + k.lane_margin + k.swing_out
    up = lateral_row((lane_hi + 1) * k.lane_width - inset, y, sinpsi, cospsi, v, a_lo, a_hi, k)
    lo = lateral_row(-(lane_lo * k.lane_width + inset), -y, -sinpsi, cospsi, v, a_lo, a_hi, k)
    return (*up, *((ca, -ck, rhs, h) for ca, ck, rhs, h in lo))


def neighbour_row(s, v, cospsi, a_t, a_lo, a_hi, spans, nb, k):
    """The gap row for one neighbour (floats) or many (arrays); nb = its table columns NB_S..NB_EVEL and
    the sine of its heading.

    spans = three lane ranges (lo, hi): occupied by the ego, swept on its way to the target lane, and
    that widened by the lane beyond the target (a car there may be changing into the same lane).
    Returns (ca, ck, rhs, h, (in each span), front); the neighbour's lanes are those its body overlaps
    plus the target lane it announced (if any). Neighbours are the same car class as the ego."""
    sn, yn, vn, an, coop, lane_to, age, epos, evel, sin_n = nb
    # lanes its body spans (as `lanes_spanned`, widened by its position error — not by the lateral travel
    # since the message: that would make every car alongside in the next lane "relevant" with a negative
    # gap barrier no longitudinal command can fix; measured 402 vs 0 collisions per 900k car-ticks at
    # 0.1 s age. Lane changes are announced (target lane) instead, which covers the motion that matters)
    odd = 0.5 * (k.front - k.rear) * sin_n
    even = 0.5 * (k.front + k.rear) * abs(sin_n) + epos
    n_lo = (yn - k.half_width + odd - even) // k.lane_width
    n_hi = (yn + k.half_width + odd + even) // k.lane_width
    n_to = lane_to + (lane_to < 0) * (n_lo - lane_to)  # no announcement: a lane it already spans
    (o_lo, o_hi), (x_lo, x_hi), (w_lo, w_hi) = spans
    inside = (((n_hi >= o_lo) & (n_lo <= o_hi)) | ((n_to >= o_lo) & (n_to <= o_hi)),
              ((n_hi >= x_lo) & (n_lo <= x_hi)) | ((n_to >= x_lo) & (n_to <= x_hi)),
              ((n_hi >= w_lo) & (n_lo <= w_hi)) | ((n_to >= w_lo) & (n_to <= w_hi)))
    front = sn >= s
    e_pos = epos + k.pos_error
    scalar = not isinstance(front, np.ndarray)
    if not scalar or front:
        gap = (sn - k.rear) - (s + k.front) - e_pos
        margin = (k.eps1 + v / k.brake) * k.vel_error + (vn / k.brake) * evel
        fr = front_row(gap, v, vn, k.brake, k, a_lo, a_hi, margin)
        if scalar:
            return (*fr, inside, front)
    # rear neighbour: advance it by the message age (it may have driven on and sped up since)
    gap = (s - k.rear) - (sn + k.front) - e_pos - (vn * age + 0.5 * k.accel * age * age)
    vr = vn + k.accel * age + evel  # not capped at the speed limit: a bound, and larger is safer
    ar = (1.0 - coop) * _clip(an, -k.brake, k.accel)
    share = 1.0 - 0.5 * coop  # cooperative follower of the same class: b/(b + b) = ½ each (Wang–Ames)
    margin = (v * cospsi / k.brake) * k.vel_error
    rr = rear_row(gap, v, cospsi, vr, ar, k.brake, share, a_t, k, margin)
    if scalar:
        return (*rr, inside, front)
    return (*(np.where(front, f, r) for f, r in zip(fr, rr)), inside, front)
