"""The graders themselves: each exercise's grader must FAIL the stub as shipped and a plausible wrong answer,
and PASS the reference solution and a different correct answer (tests/graders/README.md).

Everything runs in this process: the graders' check functions are called directly on each version of the
exercise (no pytest subprocess per version). Slow parts of a grader (vLLM, Prometheus) are left out here;
their cheap checks decide the verdict.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import pytest

import ch09_advanced.triton_ops  # noqa: F401 - on CPU sets TRITON_INTERPRET=1 before anything imports triton

TESTS = Path(__file__).resolve().parents[1]
VARIANTS = TESTS / "graders"
EXPECTED = {"stub": "fail", "wrong": "fail", "solution": "pass", "alternative": "pass"}

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # as the graders run (tests/conftest.py)


def grader(chapter: str, name: str):
    """The grader module ``tests/<chapter>/<name>.py``, imported as pytest's prepend mode imports it."""
    folder = str(TESTS / chapter)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module(name)


def load_file(path: Path):
    spec = importlib.util.spec_from_file_location(f"_grader_variant_{path.stem}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def version(package: str, module: str, number: str, which: str):
    if which in ("stub", "solution"):
        kind = "exercises" if which == "stub" else "solutions"
        return importlib.import_module(f"{package}.{kind}.{module}")
    return load_file(VARIANTS / f"ex{number.replace('.', '_')}_{which}.py")


def verdict(checks, mod) -> tuple[str, str]:
    """``("pass", "")`` when every check passes, else ``("fail" | "skip", why)``."""
    try:
        for check in checks:
            check(mod)
    except pytest.skip.Exception as exc:
        return "skip", str(exc)
    except Exception as exc:  # an AssertionError from a check, or whatever the version raised
        return "fail", f"{type(exc).__name__}: {str(exc)[:300]}"
    return "pass", ""


def given(mod):
    """The ``exercise`` fixture's value for a grader's test function: hands it ``mod``."""
    return lambda package, module: mod


def assert_verdict(checks, package: str, module: str, number: str, which: str) -> None:
    got, why = verdict(checks, version(package, module, number, which))
    if got == "skip":  # a tool the grader needs is missing here (hadolint...): nothing to compare
        pytest.skip(why)
    assert got == EXPECTED[which], f"exercise {number}'s grader gave {got} on the {which} version: {why}"


# --------------------------------------------------------------------------- 2.1


@pytest.mark.parametrize("which", list(EXPECTED))
def test_grader_2_1(which):
    from common.presets import preset_names

    g = grader("ch02", "test_ex2_1_memory_needs")
    tiny = load_file(TESTS / "conftest.py").TINY_LLAMA
    checks = [g.test_llama3_8b_bf16_at_128k_context, g.test_compare_models_sorts_by_total,
              lambda m: g.test_multi_head_config_without_kv_heads_uses_all_heads(m, dict(tiny)),
              *[lambda m, n=n: g.test_every_preset_agrees_with_the_chapter_calculator(m, n) for n in preset_names()]]
    assert_verdict(checks, "ch02_gpu", "ex2_1_memory_needs", "2.1", which)


# --------------------------------------------------------------------------- 2.2


@pytest.fixture(scope="module")
def tiny_generator():
    """The embedded model's tokenizer and a tiny random ``transformers`` Llama over its vocabulary."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from common.models import ensure_model

    tok = AutoTokenizer.from_pretrained(ensure_model())
    tiny = {k: v for k, v in load_file(TESTS / "conftest.py").TINY_LLAMA.items() if k != "model_type"}
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(**{**tiny, "vocab_size": len(tok)})).eval(), tok


@pytest.mark.parametrize("which", list(EXPECTED))
def test_grader_2_2(which, tiny_generator, tmp_path):
    g = grader("ch02", "test_ex2_2_monitor_inference")
    model, tok = tiny_generator
    assert_verdict([lambda m: g.check_trace(m, model, tok, tmp_path, mem_floor_mb=100)], "ch02_gpu",
                   "ex2_2_monitor_inference", "2.2", which)


# --------------------------------------------------------------------------- 3.1


@pytest.mark.parametrize("which", list(EXPECTED))
def test_grader_3_1(which, tmp_path):
    g = grader("ch03", "test_ex3_1_vllm_env")
    checks = [lambda m: g.check_missing_interpreter(m, tmp_path), lambda m: g.check_fake_environment(m, tmp_path)]
    assert_verdict(checks, "ch03_env", "ex3_1_vllm_env", "3.1", which)


# --------------------------------------------------------------------------- 3.2


@pytest.mark.parametrize("which", list(EXPECTED))
def test_grader_3_2(which, tmp_path):
    g = grader("ch03", "test_ex3_2_dockerize")
    checks = [lambda m: g.test_write_context_writes_a_buildable_folder(given(m), tmp_path)]
    for kw in g.SPECS:
        checks += [lambda m, kw=kw: g.test_structure_multistage_pinned_nonroot(given(m), kw),
                   lambda m, kw=kw: g.test_structure_volume_port_health_and_cmd(given(m), kw),
                   lambda m, kw=kw: g.test_hadolint_is_clean_or_each_ignore_is_justified(given(m), tmp_path, kw)]
    assert_verdict(checks, "ch03_env", "ex3_2_dockerize", "3.2", which)


# --------------------------------------------------------------------------- 4.1


@pytest.mark.parametrize("which", list(EXPECTED))
def test_grader_4_1(which, wide_model):  # the 4.2 grader's random model (no transformers import)
    g = grader("ch04", "test_ex4_1_simple_kv_cache")
    checks = [lambda m: g.check_cache_logits(m, wide_model),
              lambda m: g.test_simple_cache_tokens_equal_no_cache_tokens(given(m), (wide_model, None))]
    assert_verdict(checks, "ch04_kvcache", "ex4_1_simple_kv_cache", "4.1", which)


# --------------------------------------------------------------------------- 4.2


@pytest.fixture(scope="module")
def ch04_grader():
    return grader("ch04", "test_ex4_2_compare_cache")


@pytest.fixture(scope="module")
def wide_model(ch04_grader):
    return ch04_grader.make_wide_model()


@pytest.mark.parametrize("which", list(EXPECTED))
def test_grader_4_2(which, ch04_grader, wide_model):
    g = ch04_grader
    checks = [lambda m: g.check_own_loop(m, wide_model, [9, 8, 7, 6, 5], 8),
              lambda m: g.check_comparison(m, wide_model)]
    assert_verdict(checks, "ch04_kvcache", "ex4_2_compare_cache", "4.2", which)


# --------------------------------------------------------------------------- 5.2


@pytest.mark.parametrize("which", list(EXPECTED))
def test_grader_5_2(which):
    g = grader("ch05", "test_ex5_2_tune_scenarios")
    assert_verdict([g.check_best_config, g.check_two_scenarios], "ch05_scheduling", "ex5_2_tune_scenarios",
                   "5.2", which)


# --------------------------------------------------------------------------- 5.1


@pytest.mark.parametrize("which", list(EXPECTED))
def test_grader_5_1(which):
    g = grader("ch05", "test_ex5_1_static_vs_continuous")
    checks = [lambda m: g.test_the_worked_example(given(m)),
              lambda m: g.test_continuous_never_takes_longer_and_bad_input_is_refused(given(m)),
              *[lambda m, mode=mode: g.test_matches_the_engine_scheduler(given(m), mode)
                for mode in ("static", "continuous")]]
    assert_verdict(checks, "ch05_scheduling", "ex5_1_static_vs_continuous", "5.1", which)


# --------------------------------------------------------------------------- 6.1


@pytest.mark.parametrize("which", list(EXPECTED))
def test_grader_6_1(which):
    g = grader("ch06", "test_ex6_1_compare_formats")
    assert_verdict([g.check_formats], "ch06_quantization", "ex6_1_compare_formats", "6.1", which)


# --------------------------------------------------------------------------- 6.2


@pytest.fixture(scope="module")
def ch06_setup(tmp_path_factory):
    import torch

    tiny = load_file(TESTS / "conftest.py").TINY_LLAMA  # "conftest" in sys.modules may be another folder's
    g = grader("ch06", "test_ex6_2_layerwise_quantize")
    folder = g.make_model_folder(dict(tiny), tmp_path_factory.mktemp("ex6_2") / "tiny-4-layers")
    calib = torch.randint(3, 256, (4, 32), generator=torch.Generator().manual_seed(0))
    return g, folder, calib


@pytest.mark.parametrize("which", list(EXPECTED))
def test_grader_6_2(which, ch06_setup, tmp_path):
    g, folder, calib = ch06_setup
    checks = [g.check_memory_plan, lambda m: g.check_streamed(m, folder, tmp_path / "q", calib)]
    assert_verdict(checks, "ch06_quantization", "ex6_2_layerwise_quantize", "6.2", which)


# --------------------------------------------------------------------------- 9.1, 9.2, 9.3


@pytest.mark.parametrize("which", list(EXPECTED))
def test_grader_9_1(which):
    g = grader("ch09", "test_ex9_1_topk_router")
    assert_verdict([g.check_bad_k, g.check_balance_extremes, g.check_picks_and_weights], "ch09_advanced",
                   "ex9_1_topk_router", "9.1", which)


@pytest.mark.parametrize("which", list(EXPECTED))
def test_grader_9_2(which):
    import torch

    from ch09_advanced.triton_ops import HAS_TRITON

    g = grader("ch09", "test_ex9_2_triton_softmax")
    checks = [g.check_source] + ([g.check_softmax] if HAS_TRITON else [])  # without triton: the static check
    if which == "wrong" and (not HAS_TRITON or torch.cuda.is_available()):
        pytest.skip("the wrong 9.2 answer falls back to torch for CPU tensors only: the interpreter run on a "
                    "machine without a GPU catches it")
    assert_verdict(checks, "ch09_advanced", "ex9_2_triton_softmax", "9.2", which)


@pytest.mark.parametrize("which", list(EXPECTED))
def test_grader_9_3(which):
    g = grader("ch09", "test_ex9_3_tiled_attention")
    assert_verdict([g.check_never_materialises_scores, lambda m: g.check_matches_standard(m, (7, 500))],
                   "ch09_advanced", "ex9_3_tiled_attention", "9.3", which)


# --------------------------------------------------------------------------- 7.1


@pytest.mark.parametrize("which", list(EXPECTED))
def test_grader_7_1(which):
    g = grader("ch07", "test_ex7_1_speculative_step")
    checks = [lambda m: g.test_identical_distributions_accept_everything(given(m)),
              lambda m: g.check_first_token_distribution(m, n=1500, atol=0.05)]  # wrong: 0.12 off
    assert_verdict(checks, "ch07_speculative", "ex7_1_speculative_step", "7.1", which)


# --------------------------------------------------------------------------- 7.2


@pytest.fixture(scope="module")
def ch07_target():
    return grader("ch07", "test_ex7_2_compare_drafts").make_target()


@pytest.mark.parametrize("which", list(EXPECTED))
def test_grader_7_2(which, ch07_target):
    g = grader("ch07", "test_ex7_2_compare_drafts")
    assert_verdict([g.check_choose, lambda m: g.check_reports(m, ch07_target)], "ch07_speculative",
                   "ex7_2_compare_drafts", "7.2", which)


# --------------------------------------------------------------------------- 8.1


@pytest.mark.parametrize("which", list(EXPECTED))
def test_grader_8_1(which, tmp_path):
    from ch08_production import k8s_manifests as km

    g = grader("ch08", "test_ex8_1_k8s_overlay")

    def rendering(m):
        return lambda **kw: km.render(m.write_overlay(tmp_path / "overlay", m.OverlaySpec(**kw)))

    checks = [lambda m: g.test_cpu_overlay_asks_for_no_gpu(rendering(m)),
              lambda m: g.test_overlay_sets_replicas_image_gpus_and_toleration(rendering(m)),
              lambda m: g.test_overlay_renders_and_every_object_validates(rendering(m))]
    assert_verdict(checks, "ch08_production", "ex8_1_k8s_overlay", "8.1", which)


# --------------------------------------------------------------------------- 8.2, 8.3 (promtool, no server)


def needs_promtool():
    import shutil

    if shutil.which("promtool") is None:
        pytest.skip("no promtool (make prometheus): the 8.2/8.3 graders' value checks need it")


@pytest.mark.parametrize("which", list(EXPECTED))
def test_grader_8_2(which, tmp_path):
    needs_promtool()
    g = grader("ch08", "test_ex8_2_monitoring")
    checks = [g.check_names, lambda m: g.check_slo_alert(m, tmp_path), lambda m: g.check_values(m, tmp_path)]
    assert_verdict(checks, "ch08_production", "ex8_2_monitoring", "8.2", which)


@pytest.mark.parametrize("which", list(EXPECTED))
def test_grader_8_3(which, tmp_path):
    needs_promtool()
    g = grader("ch08", "test_ex8_3_roi_dashboard")
    checks = [g.check_cost_per_million, g.check_dashboard, lambda m: g.check_exact_dollars(m, tmp_path, False),
              lambda m: g.check_exact_dollars(m, tmp_path, True)]
    assert_verdict(checks, "ch08_production", "ex8_3_roi_dashboard", "8.3", which)
