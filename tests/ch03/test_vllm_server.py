"""ch03_env.vllm_server without starting vLLM: the command line, the environment, the missing-venv sentence."""

from __future__ import annotations

import pytest

from ch03_env import vllm_server as vs


def test_command_has_the_cpu_defaults():
    cfg = vs.VLLMServerConfig()
    cmd = vs.build_command(cfg, "/m", 12345, vs.VLLM_PYTHON)
    assert cmd[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]  # not the `vllm` CLI (see DESIGN §5)
    joined = " ".join(cmd)
    for part in ("--model /m", "--host 127.0.0.1", "--port 12345", "--dtype float32", "--enforce-eager",
                 "--max-model-len 2048", f"--served-model-name {vs.SERVED_MODEL_NAME}"):
        assert part in joined


def test_environment_sets_the_kv_budget_and_stays_offline(monkeypatch):
    monkeypatch.setenv("VIRTUAL_ENV", "/work/main/.venv")
    env = vs.build_env(vs.VLLMServerConfig(kvcache_space_gib=3, extra_env={"X": "1"}))
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "3" and env["HF_HUB_OFFLINE"] == "1" and env["X"] == "1"
    assert "VIRTUAL_ENV" not in env


@pytest.mark.parametrize("kw", [{"dtype": "int8"}, {"max_model_len": 4}, {"kvcache_space_gib": 0},
                                {"startup_timeout_s": 0}])
def test_bad_settings_are_refused(kw):
    with pytest.raises(ValueError):
        vs.VLLMServerConfig(**kw)


def test_missing_venv_is_one_sentence(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("LLMIC_VLLM_PYTHON", str(tmp_path / "none" / "python"))
    with pytest.raises(vs.VLLMUnavailable, match="make vllm-env"):
        vs.require_vllm_python()
    assert vs.main(["--smoke", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: vLLM's environment is missing") and "Traceback" not in err


def test_base_url_needs_a_started_server():
    server = vs.VLLMServer()
    with pytest.raises(vs.VLLMUnavailable):
        _ = server.base_url
    server.stop()  # stopping a server that never started is a no-op
