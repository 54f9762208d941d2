"""Barrier conditions as affine rows  a·u ≥ b  of the CBF-QP, and the margins that make them robust.

All functions are plain arithmetic, so they take Python floats (the per-call hot path) or numpy arrays
(batches) alike. A barrier h(x) ≥ 0 describes the safe set.

- relative degree 1, continuous time:  ḣ = L_f h + L_g h·u ≥ −α h + margin
- relative degree 2, continuous time (HOCBF, Xiao & Belta): ψ₁ = ḣ + α₁h, require ψ̇₁ + α₂ψ₁ ≥ margin,
  i.e. L_f²h + L_gL_f h·u + α₁L_f h + α₂(L_f h + α₁h) ≥ margin
- discrete time (Agrawal & Sreenath): h(x⁺) ≥ (1 − γ) h(x), with h(x⁺) bounded below by an affine model
  h(x⁺) ≥ h₀ + d·u that is *conservative* (chord of a concave term, tangent of a convex one, Taylor
  remainder bounds), so the row implies the true condition.
Margins: `sampled_data_margin` covers a continuous condition held by a zero-order hold over the control
period; `robust_margin` tightens by (Lipschitz constant) × (state-error bound + speed bound × message age).
"""
from __future__ import annotations


def continuous_row(h, lf_h, lg_h, alpha, margin=0.0):
    """Relative degree 1: returns (a, b) with a = L_g h (per input) and b = −L_f h − α h + margin."""
    return lg_h, -lf_h - alpha * h + margin


def hocbf_row(h, lf_h, lf2_h, lglf_h, alpha1, alpha2, margin=0.0):
    """Relative degree 2 (linear class-K α₁, α₂): returns (a, b) with a = L_g L_f h."""
    psi1 = lf_h + alpha1 * h
    return lglf_h, -lf2_h - alpha1 * lf_h - alpha2 * psi1 + margin


def discrete_row(h_now, h_pred0, h_pred_du, gamma, margin=0.0):
    """Discrete time: h(x⁺) ≥ h_pred0 + h_pred_du·u must be ≥ (1 − γ) h_now + margin.

    Returns (a, b) with a = h_pred_du and b = (1 − γ) h_now − h_pred0 + margin."""
    return h_pred_du, (1.0 - gamma) * h_now - h_pred0 + margin


def sampled_data_margin(lip_condition, state_speed_bound, dt):
    """A continuous condition c(x, u) ≥ 0 checked only at the samples stays ≥ 0 between them if it holds
    at the sample with this much to spare: |∂c/∂x| · max|ẋ| · dt (Taylor et al., SD-CBF)."""
    return lip_condition * state_speed_bound * dt


def robust_margin(lip_h, state_error, lip_hdot=0.0, alpha=0.0, speed_bound=0.0, age=0.0):
    """Measurement-robust tightening: the state used may be off by state_error + speed_bound·age (a message
    `age` seconds old about something moving at most `speed_bound`). For a discrete-time row pass lip_hdot=0
    and alpha=0 with lip_h = |∂h/∂x|; for a continuous row the margin is (L_ḣ + α L_h) × error."""
    err = state_error + speed_bound * age
    scale = lip_h if (lip_hdot == 0.0 and alpha == 0.0) else lip_hdot + alpha * lip_h
    return scale * err
