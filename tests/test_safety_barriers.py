"""The generic barrier-row helpers: algebra of the continuous, HOCBF and discrete forms and the margins."""
import pytest

from rtctl.safety import continuous_row, discrete_row, hocbf_row, robust_margin, sampled_data_margin


def test_rows_encode_their_conditions():
    # ḣ = L_f h + L_g h·u ≥ −αh + m
    a, b = continuous_row(h=0.5, lf_h=-1.0, lg_h=2.0, alpha=3.0, margin=0.1)
    assert (a, b) == (2.0, pytest.approx(1.0 - 1.5 + 0.1))
    # ψ₁ = ḣ + α₁h;  L_f²h + L_gL_f h·u + α₁L_f h + α₂ψ₁ ≥ m
    a, b = hocbf_row(h=0.5, lf_h=-1.0, lf2_h=0.2, lglf_h=-2.0, alpha1=2.0, alpha2=3.0)
    assert a == -2.0 and b == pytest.approx(-0.2 + 2.0 - 3.0 * 0.0)
    # h⁺ ≥ h₀ + d·u ≥ (1 − γ)h + m
    a, b = discrete_row(h_now=1.0, h_pred0=0.7, h_pred_du=0.5, gamma=0.4, margin=0.05)
    assert a == 0.5 and b == pytest.approx(0.6 - 0.7 + 0.05)


def test_margins_grow_with_error_age_and_period():
    assert sampled_data_margin(2.0, 3.0, 0.1) == pytest.approx(0.6)
    base = robust_margin(1.5, 0.02)
    assert base == pytest.approx(0.03)
    assert robust_margin(1.5, 0.02, speed_bound=2.0, age=0.1) > base
    assert robust_margin(1.5, 0.02, lip_hdot=1.0, alpha=2.0) == pytest.approx((1.0 + 3.0) * 0.02)
