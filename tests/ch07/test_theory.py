"""7.1 / 7.5.1: the expected-tokens and speedup formulas, checked against a Monte Carlo simulation."""

from __future__ import annotations

import math

import pytest

from ch07_speculative import theory


@pytest.mark.parametrize(("alpha", "gamma"), [(0.0, 3), (0.5, 2), (0.8, 4), (0.95, 8)])
def test_monte_carlo_agrees_with_the_formula(alpha: float, gamma: int) -> None:
    mc = theory.simulate_tokens_per_step(alpha, gamma, rounds=40_000, seed=1)
    assert mc == pytest.approx(theory.expected_tokens_per_step(alpha, gamma), rel=0.02)


def test_formula_limits() -> None:
    assert theory.expected_tokens_per_step(0.0, 5) == 1.0  # nothing accepted: one token per step
    assert theory.expected_tokens_per_step(1.0, 5) == 6.0  # everything accepted plus the bonus token
    assert theory.expected_tokens_per_step(0.999999, 5) == pytest.approx(6.0, rel=1e-4)
    # Leviathan et al. 2023, fig. 3 region: alpha=0.8, gamma=4, c=0 -> 3.36 tokens per step
    assert theory.speedup(0.8, 4, 0.0) == pytest.approx((1 - 0.8**5) / 0.2)
    assert theory.speedup(0.8, 4, 0.5) == pytest.approx(theory.expected_tokens_per_step(0.8, 4) / 3)


def test_best_gamma_grows_with_alpha_and_shrinks_with_cost() -> None:
    assert theory.best_gamma(0.9, 0.05) > theory.best_gamma(0.6, 0.05)
    assert theory.best_gamma(0.8, 0.5) < theory.best_gamma(0.8, 0.01)
    assert theory.speedup(0.3, 4, 1.0) < 1.0  # a slow draft with poor acceptance loses


def test_measured_verify_costs_change_the_best_gamma() -> None:
    """On a CPU verifying gamma + 1 tokens costs more than one step; the formula then prefers a smaller gamma."""
    assert theory.speedup(0.9, 4, 0.2, verify=2.0) == pytest.approx(theory.expected_tokens_per_step(0.9, 4) / 2.8)
    free = {g: 1.0 for g in range(1, 11)}
    steep = {g: 1.0 + 0.5 * g for g in range(1, 11)}  # every extra verified token costs half a step
    assert theory.best_gamma(0.9, 0.1, verify=free) == theory.best_gamma(0.9, 0.1, max_gamma=10)
    assert theory.best_gamma(0.9, 0.1, verify=steep) < theory.best_gamma(0.9, 0.1, verify=free)
    assert theory.best_gamma(1.0, 0.3, verify={3: 1.2, 5: 1.3}) == 5  # only the measured gammas are candidates
    with pytest.raises(ValueError, match="verify cost"):
        theory.speedup(0.5, 4, 0.1, verify=0.0)


def test_alpha_inversion_round_trips() -> None:
    for a in (0.1, 0.5, 0.9):
        assert theory.alpha_from_tokens_per_step(theory.expected_tokens_per_step(a, 4), 4) == pytest.approx(a, abs=1e-6)


def test_alpha_from_acceptance_rate_inverts_the_expected_rate() -> None:
    for a in (0.2, 0.6, 0.95):
        rate = (theory.expected_tokens_per_step(a, 5) - 1) / 5
        assert theory.alpha_from_acceptance_rate(rate, 5) == pytest.approx(a, abs=1e-6)


def test_bad_input_is_one_sentence() -> None:
    with pytest.raises(ValueError, match="alpha"):
        theory.speedup(1.5, 4, 0.1)
    with pytest.raises(ValueError, match="cost ratio"):
        theory.speedup(0.5, 4, -1)


def test_cli_prints_table_and_json(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LLMIC_REPORTS_DIR", str(tmp_path))
    assert theory.main(["--smoke", "--alpha", "0.7", "--gamma", "3", "--c", "0.2", "--no-plot"]) == 0
    from common.report import parse_json_line

    out = parse_json_line(capsys.readouterr().out)
    assert math.isclose(out["tokens_per_step"], (1 - 0.7**4) / 0.3)
    assert abs(out["tokens_per_step_monte_carlo"] - out["tokens_per_step"]) < 0.05
