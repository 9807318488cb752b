"""Every chapter 9 script answers --help without running anything, and bad flags get one sentence."""

import pytest

MODULES = ["flash_attention", "moe", "compile_decode", "compile_engine", "triton_ops", "cpp_op", "edge", "multimodal",
           "bench", "headline"]


@pytest.mark.parametrize("name", MODULES)
def test_help_exits_zero(name, capsys):
    import importlib

    mod = importlib.import_module(f"ch09_advanced.{name}")
    with pytest.raises(SystemExit) as exc:
        mod.main(["--help"])
    assert exc.value.code == 0
    assert "usage" in capsys.readouterr().out


def test_moe_top_k_above_experts_is_one_sentence(capsys):
    from ch09_advanced import moe

    with pytest.raises(SystemExit) as exc:
        moe.main(["--experts", "2", "--top-k", "3"])
    assert exc.value.code == 2
    assert "--top-k must not exceed --experts" in capsys.readouterr().err
