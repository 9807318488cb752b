"""``features_bench --smoke`` on the real engine: n choices on forked blocks vs n requests (identical
tokens, fewer blocks, the prompt computed once) and the logprobs overhead; json_schema keys present."""

from __future__ import annotations

import pytest

from common.report import parse_json_line


def test_smoke_reports_blocks_identical_tokens_and_logprobs_overhead(capsys):
    from ch08_production import features_bench

    assert features_bench.main(["--smoke", "--json"]) == 0
    out = parse_json_line(capsys.readouterr().out)
    rows = {r["n"]: r for r in out["parallel_sampling"]}
    assert set(rows) == {1, 4} and out["identical_tokens"] is True
    n4 = rows[4]
    assert n4["fork_prefill_tokens"] == out["prompt_len"] and n4["indep_prefill_tokens"] == 4 * out["prompt_len"]
    assert n4["fork_peak_blocks"] < n4["indep_peak_blocks"] and out["n4_blocks_vs_independent"] < 1
    assert rows[1]["fork_peak_blocks"] == rows[1]["indep_peak_blocks"]
    assert out["logprobs"]["batch"] == 8 and isinstance(out["logprobs_overhead_pct"], float)
    schema = {r["batch"]: r for r in out["json_schema"]}
    assert set(schema) == {1, 8}
    for b, key in ((1, "json_schema_overhead_pct_bs1"), (8, "json_schema_overhead_pct_bs8")):
        r = schema[b]  # the same tokens both ways (no request can finish its JSON early), the overhead from them
        assert r["tokens"] == b * 8 and r["grammar_ms_per_step"] > 0
        assert out[key] == pytest.approx(100.0 * (1.0 - r["schema_tok_s"] / r["free_tok_s"]))


def test_parallel_sampling_cli_help():
    from ch05_scheduling import parallel_sampling

    with pytest.raises(SystemExit) as exc:
        parallel_sampling.main(["--help"])
    assert exc.value.code == 0
