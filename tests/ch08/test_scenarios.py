"""C.4's scenarios: chat, batch and mixed on the real engine, each priced per 1M tokens."""

from __future__ import annotations

import pytest

from ch08_production.scenarios import cost_per_million
from common.report import parse_json_line


def test_cost_per_million_tokens_is_price_over_tokens_per_hour():
    assert cost_per_million(3.6, 1000.0) == pytest.approx(1.0)  # 3.6 M tokens/h at $3.6/h
    assert cost_per_million(0.10, 50.0) == pytest.approx(0.10 / 180_000 * 1e6)


@pytest.mark.slow
def test_smoke_runs_all_three_scenarios_and_prices_each(capsys):
    from ch08_production import scenarios

    assert scenarios.main(["--smoke", "--json", "--price-per-hour", "0.2"]) == 0
    out = parse_json_line(capsys.readouterr().out)
    s = out["scenarios"]
    assert set(s) == {"chat", "batch", "mixed"}
    assert s["mixed"]["requests"] == s["chat"]["requests"] + s["batch"]["requests"]
    assert s["mixed"]["output_tokens"] == s["chat"]["output_tokens"] + s["batch"]["output_tokens"]
    assert s["batch"]["chat_slo_attainment"] is None and 0 <= s["mixed"]["chat_slo_attainment"] <= 1
    for r in s.values():
        assert r["cost_per_1m_tokens"] == pytest.approx(cost_per_million(0.2, r["throughput_tok_s"]))
    assert out["price_source"] == "--price-per-hour"


def test_help_and_bad_input():
    from ch08_production import scenarios

    with pytest.raises(SystemExit) as exc:
        scenarios.main(["--help"])
    assert exc.value.code == 0
    with pytest.raises(SystemExit) as exc:
        scenarios.main(["--chat-rate", "0"])
    assert exc.value.code == 2
