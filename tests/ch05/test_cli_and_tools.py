"""Every ch05 module has a working --help; tune, headline, bench and basic_inference run end to end."""

from __future__ import annotations

import importlib

import pytest

from common.report import parse_json_line

MODULES = ["sequence", "policies", "scheduler", "model_runner", "engine", "async_engine", "cost_model", "workload",
           "metrics", "simulator", "timeline", "replay", "calibrate", "bench", "rate_at_slo", "tune", "headline",
           "basic_inference", "structured", "structured_bench",
           "vllm_bench"]


@pytest.mark.parametrize("name", MODULES)
def test_help_works_and_nothing_runs_at_import(name, capsys):
    mod = importlib.import_module(f"ch05_scheduling.{name}")
    if not hasattr(mod, "main"):
        pytest.skip("library module without a CLI")
    if name == "vllm_bench":
        assert mod.main(["--help"]) == 0
        return
    with pytest.raises(SystemExit) as exc:
        mod.main(["--help"])
    assert exc.value.code == 0
    assert "usage" in capsys.readouterr().out


def test_tune_on_the_simulator_gives_advice_per_scenario(capsys):
    from ch05_scheduling import tune

    assert tune.main(["--smoke", "--json"]) == 0
    out = parse_json_line(capsys.readouterr().out)
    assert set(out["advice"]) == {"chat", "batch"}
    assert all(r["tok/s"] > 0 for r in out["rows"])


def test_scheduler_and_simulator_demos_run(capsys):
    from ch05_scheduling import policies, scheduler, simulator

    assert scheduler.main([]) == 0 and policies.main([]) == 0
    assert simulator.main(["--smoke", "--json"]) == 0
    rows = parse_json_line(capsys.readouterr().out)["simulator"]
    by = {r["policy"]: r for r in rows}
    assert by["continuous"]["tok/s"] > by["static"]["tok/s"] > by["fifo"]["tok/s"]


@pytest.mark.slow
def test_bench_smoke_emits_the_issue_keys(capsys):
    from ch05_scheduling import bench

    assert bench.main(["--smoke", "--json", "--check", "1"]) == 0
    out = parse_json_line(capsys.readouterr().out)
    for key in ("engine_tok_s", "hf_static_tok_s", "vllm_tok_s", "continuous_vs_static", "engine_vs_hf",
                "engine_vs_vllm", "simulator_throughput_error_pct", "simulator_ttft_error_pct",
                "outputs_identical_to_single", "hardware"):
        assert key in out
    assert out["outputs_identical_to_single"] is True
    assert out["engine_tok_s"] > 0 and out["hf_static_tok_s"] > 0


@pytest.mark.slow
def test_headline_smoke_is_measured_and_consistent():
    from ch05_scheduling.headline import headline

    h = headline(smoke=True)
    assert h.chapter == "ch05" and h.figures["outputs_identical"] is True
    assert f"{h.figures['continuous_vs_static']:.2f}x" in h.text
    ratio = h.figures["continuous_vs_static_rate_at_slo"]  # the headline figure is the one the text states
    assert (f"{ratio:.1f}x the request rate" in h.text) if ratio else ("static batching met none" in h.text)


@pytest.mark.slow
def test_basic_inference_engine_backend_streams(capsys):
    from ch05_scheduling import basic_inference

    assert basic_inference.main(["--backend", "engine", "--smoke", "--mode", "stream", "--max-new-tokens", "8"]) == 0
    out = parse_json_line(capsys.readouterr().out)
    assert out["backend"] == "engine" and out["stream_pieces"] >= 1


@pytest.mark.vllm
@pytest.mark.slow
def test_vllm_sweep_path_runs_one_point(capsys):
    from ch05_scheduling import tune

    assert tune.main(["--on", "vllm", "--smoke", "--json"]) == 0
    rows = parse_json_line(capsys.readouterr().out)["rows"]
    assert rows and all(r["tok/s"] > 0 for r in rows)
