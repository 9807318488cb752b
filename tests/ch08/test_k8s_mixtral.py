"""The Mixtral recipe (book 9.1, deployed as in 8.3): ``k8s/overlays/mixtral`` and ``docker/mixtral.env``.

The overlay renders on top of ``overlays/gpu`` (schema validation runs in test_k8s_manifests.py through
``TREES``); here its numbers are checked against the ch02 calculator: tensor parallelism equals the GPUs
requested, two 80 GB cards at ``--gpu-memory-utilization`` hold the bf16 weights with KV cache to spare,
the PVC holds the weights, the served name matches the ConfigMap, the download reads its token from a
Secret, and the compose env file yields the same vLLM settings through compose's ``${VAR:-default}``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from ch02_gpu.estimate import MemoryRequest, estimate, vllm_gpu_kv_capacity
from ch02_gpu.gpus import find_gpu, load_gpus
from ch02_gpu.vram import load_arch
from ch08_production import k8s_manifests as km
from common.presets import get_preset

REPO = Path(__file__).resolve().parents[2]
OVERLAY = REPO / "k8s/overlays/mixtral"
ENV_FILE = REPO / "docker/mixtral.env"
REPO_ID = "mistralai/Mixtral-8x7B-Instruct-v0.1"
MIB = 2**20
_QUANTITY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "": 1}


def flags(args: list[str]) -> dict[str, str | bool]:
    """``--k=v`` / ``--k v`` / ``--switch`` -> ``{"--k": "v", "--switch": True}``."""
    out: dict[str, str | bool] = {}
    i = 0
    while i < len(args):
        key, eq, val = args[i].partition("=")
        if eq:
            out[key] = val
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            out[key] = args[i + 1]
            i += 1
        else:
            out[key] = True
        i += 1
    return out


def quantity_bytes(q: str) -> float:
    num, unit = re.fullmatch(r"([0-9.]+)([KMGT]i?)?", q).groups()
    return float(num) * _QUANTITY[unit or ""]


def read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            assert not value.startswith(("'", '"')), f"{key}: keep values unquoted, as the test reads them"
            env[key.strip()] = value.strip()
    return env


def interpolate(node, env: dict[str, str]):
    """Compose's ``${VAR}`` and ``${VAR:-default}`` (default when unset or empty) over a parsed file."""
    def sub(m: re.Match) -> str:
        name, default = m.group(1), m.group(3)
        return env.get(name) or (default if default is not None else "")

    if isinstance(node, str):
        assert re.sub(r"\$\{(\w+)(:-([^}]*))?\}", "", node).count("$") == 0, f"unsupported form in {node!r}"
        return re.sub(r"\$\{(\w+)(:-([^}]*))?\}", sub, node)
    if isinstance(node, list):
        return [interpolate(x, env) for x in node]
    if isinstance(node, dict):
        return {k: interpolate(v, env) for k, v in node.items()}
    return node


@pytest.fixture(scope="module")
def objs() -> list[dict]:
    return km.render("overlays/mixtral")


@pytest.fixture(scope="module")
def gpu_objs() -> list[dict]:
    return km.render("overlays/gpu")


@pytest.fixture(scope="module")
def vllm(objs) -> dict:
    c = km.containers(objs)["vllm"]
    return {"container": c, "flags": flags(c["args"])}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker/compose.yaml").read_text())


def _weights_bytes(tp: int = 1, context: int = 4096) -> int:
    return estimate(load_arch("mixtral-8x7b"), MemoryRequest(weight_dtype="bf16", context=context, tp=tp)).weights_bytes


def test_vllm_serves_mixtral_in_bf16_with_tensor_parallel_equal_to_the_gpus_requested(vllm):
    c, f = vllm["container"], vllm["flags"]
    assert c["command"][:2] == ["vllm", "serve"] and c["command"][2].endswith("/" + REPO_ID.split("/")[1])
    gpus = c["resources"]["limits"]["nvidia.com/gpu"]
    assert gpus == c["resources"]["requests"]["nvidia.com/gpu"] == 2
    assert int(f["--tensor-parallel-size"]) == gpus
    assert f["--dtype"] == "bfloat16" and f["--port"] == "8001"
    assert "--enable-expert-parallel" not in f  # off by default; the overlay shows it as a comment
    assert "# - --enable-expert-parallel" in (OVERLAY / "deployment-mixtral.yaml").read_text()
    assert c["image"].startswith("vllm/vllm-openai:")


def test_two_80gb_gpus_hold_the_bf16_weights_with_room_for_kv_cache(objs, vllm):
    f = vllm["flags"]
    tp, util, max_len = int(f["--tensor-parallel-size"]), float(f["--gpu-memory-utilization"]), int(f["--max-model-len"])
    arch = load_arch("mixtral-8x7b")
    h100 = find_gpu("H100")
    # The node affinity admits cards reporting more than this many MiB; count with the smaller of the two.
    pod = km.find(objs, "Deployment")["spec"]["template"]["spec"]
    expr = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"][0]["matchExpressions"][0]
    assert expr["key"] == "nvidia.com/gpu.memory" and expr["operator"] == "Gt"
    card_bytes = min(h100.memory_bytes, int(expr["values"][0]) * MIB)

    request = MemoryRequest(weight_dtype="bf16", context=max_len, tp=tp)
    weights_per_gpu = estimate(arch, request).weights_bytes / tp
    assert weights_per_gpu < card_bytes * util  # the weights fit ...
    kv = vllm_gpu_kv_capacity(arch, request, card_bytes, util)
    assert kv.tokens >= max_len  # ... and vLLM has KV blocks for at least one full-length sequence
    one_card = vllm_gpu_kv_capacity(arch, MemoryRequest(weight_dtype="bf16", context=max_len, tp=1), h100.memory_bytes,
                                    util)
    assert one_card.tokens == 0  # which is why it takes two cards
    assert max_len <= get_preset("mixtral-8x7b")["max_position_embeddings"]


def test_node_affinity_admits_80gb_cards_and_excludes_smaller_ones(objs):
    pod = km.find(objs, "Deployment")["spec"]["template"]["spec"]
    threshold = int(pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"][0]["matchExpressions"][0]["values"][0])
    for g in (g for g in load_gpus() if g.vendor == "NVIDIA"):
        # GFD reports MiB; count a card both as vendor GB (1e9) and as GiB, the label lies between
        low, high = g.memory_bytes / MIB, g.memory_gb * 1024
        assert (low > threshold) == (high > threshold) == (g.memory_gb >= 80), g.name
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}  # kept from the gpu overlay


def test_chapter_9_moe_numbers_agree_with_the_calculator():
    from ch09_advanced.moe import mixtral_numbers

    assert mixtral_numbers()["mixtral_weights_gib_bf16"] == pytest.approx(_weights_bytes() / 2**30)


def test_served_model_name_and_model_folder_match_the_configmap(objs, vllm):
    data = km.find(objs, "ConfigMap", "llm-server-config")["data"]
    folder = vllm["container"]["command"][2]
    assert data["LLMIC_SERVED_MODEL_NAME"] == vllm["flags"]["--served-model-name"]
    assert data["LLMIC_MODEL"] == data["LLMIC_MODEL_DIR"] == folder  # the gateway tokenizes with this folder
    init = km.containers(objs)["prepare-model"]
    assert flags(init["command"][3:])["--local-dir"] == folder
    assert data["LLMIC_BACKEND"] == "vllm" and data["LLMIC_VLLM_URL"].endswith(":" + vllm["flags"]["--port"])


def test_pvc_is_larger_than_the_weights(objs, gpu_objs):
    size = quantity_bytes(km.find(objs, "PersistentVolumeClaim")["spec"]["resources"]["requests"]["storage"])
    weights = _weights_bytes()
    assert size > 1.1 * weights  # safetensors plus hub metadata, with headroom
    base = quantity_bytes(km.find(gpu_objs, "PersistentVolumeClaim")["spec"]["resources"]["requests"]["storage"])
    assert base < weights  # the gpu overlay's claim could not hold them: the patch is needed


def test_init_container_downloads_the_repo_with_a_token_from_a_secret(objs, vllm):
    init = km.containers(objs)["prepare-model"]
    assert init["command"][:3] == ["hf", "download", REPO_ID]
    assert flags(init["command"][3:])["--exclude"] == "*.pt"
    env = {e["name"]: e for e in init["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf-token", "key": "token"}
    assert "value" not in env["HF_TOKEN"]
    assert env["HF_HUB_OFFLINE"]["value"] == "0"  # the ConfigMap's "1" would forbid the download
    assert env["HF_HOME"]["value"].startswith("/models/")  # caches on the big volume, not /tmp's emptyDir
    assert any(m["mountPath"] == "/models" and not m.get("readOnly") for m in init["volumeMounts"])
    assert init["image"] == vllm["container"]["image"]  # the vLLM image carries the hf CLI
    assert "hf-token" not in {o["metadata"]["name"] for o in objs if o["kind"] == "Secret"}  # made out of band


def test_no_token_literal_is_committed():
    files = [*OVERLAY.glob("*.yaml"), ENV_FILE, REPO / "docker/compose.yaml", REPO / "k8s/README.md"]
    for path in files:
        assert not re.search(r"hf_[A-Za-z0-9]{20,}", path.read_text()), path


def test_network_policy_lets_the_download_out_on_https(objs):
    egress = km.find(objs, "NetworkPolicy")["spec"]["egress"]
    https_anywhere = [r for r in egress if "to" not in r
                      and {"port": 443, "protocol": "TCP"} in r.get("ports", [])]
    assert https_anywhere  # huggingface.co and its CDN are reachable from the init container


def test_gateway_is_unchanged_from_the_gpu_overlay(objs, gpu_objs):
    assert km.containers(objs)["server"] == km.containers(gpu_objs)["server"]


def test_startup_probe_allows_loading_the_weights_from_a_slow_volume(objs, gpu_objs, vllm):
    probe = vllm["container"]["startupProbe"]
    budget_s = probe["periodSeconds"] * probe["failureThreshold"]
    gpu_probe = km.containers(gpu_objs)["vllm"]["startupProbe"]
    assert budget_s > gpu_probe["periodSeconds"] * gpu_probe["failureThreshold"]
    assert budget_s >= _weights_bytes() / 100e6  # the weights read at 100 MB/s, before any compile time
    assert probe["httpGet"]["path"] == "/health"


def test_shared_memory_and_host_memory_are_sized_for_two_workers(objs, gpu_objs, vllm):
    def shm(o):
        pod = km.find(o, "Deployment")["spec"]["template"]["spec"]
        return quantity_bytes({v["name"]: v for v in pod["volumes"]}["dshm"]["emptyDir"]["sizeLimit"])

    assert shm(objs) > shm(gpu_objs)
    res = vllm["container"]["resources"]
    assert quantity_bytes(res["limits"]["memory"]) >= quantity_bytes(res["requests"]["memory"]) + shm(objs)


def test_compose_defaults_are_todays_values(compose):
    services = interpolate(compose["services"], {})
    v = services["vllm"]
    assert v["environment"]["MODEL"] == "/models/SmolLM2-135M-Instruct"
    assert v["environment"]["SERVED_MODEL_NAME"] == "smollm2-135m"
    assert v["environment"]["EXTRA_ARGS"] == ""
    assert flags(v["command"]) == {"--tensor-parallel-size": "1",  # vLLM's own default
                                   "--gpu-memory-utilization": "0.85", "--max-model-len": "4096"}
    s = services["server"]["environment"]
    assert s["LLMIC_BACKEND"] == "engine" and s["LLMIC_MODEL"] == "" and s["LLMIC_SERVED_MODEL_NAME"] == ""


def test_mixtral_env_file_gives_compose_the_overlays_vllm_settings(compose, objs, vllm):
    env = read_env_file(ENV_FILE)
    services = interpolate(compose["services"], env)
    v, s = services["vllm"], services["server"]["environment"]
    f = {**flags(v["command"]), **flags(shlex.split(v["environment"]["EXTRA_ARGS"]))}
    k8s = vllm["flags"]
    for key in ("--tensor-parallel-size", "--gpu-memory-utilization", "--max-model-len", "--dtype",
                "--max-num-seqs", "--enable-prefix-caching"):
        assert f[key] == k8s[key], key
    folder = vllm["container"]["command"][2]
    assert v["environment"]["MODEL"] == s["LLMIC_MODEL"] == folder  # vLLM's weights, the gateway's tokenizer
    assert v["environment"]["SERVED_MODEL_NAME"] == s["LLMIC_SERVED_MODEL_NAME"] == k8s["--served-model-name"]
    assert s["LLMIC_BACKEND"] == "vllm"
    assert "models:/models:ro" in services["server"]["volumes"]
    assert set(env) <= set(re.findall(r"\$\{(\w+)", (REPO / "docker/compose.yaml").read_text()))  # no dead key


def test_entrypoint_appends_extra_args_after_the_command(compose, tmp_path):
    env = read_env_file(ENV_FILE)
    v = interpolate(compose["services"]["vllm"], env)
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python3").write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
    (fake / "python3").chmod(0o755)
    run_env = {**v["environment"], "MODEL": str(model), "PORT": "8000", "PATH": f"{fake}:{os.environ['PATH']}"}
    out = subprocess.run(["sh", str(REPO / "docker/entrypoint-vllm.sh"), *v["command"]], env=run_env,
                         capture_output=True, text=True, check=True).stdout.split("\n")[:-1]
    head = ["-m", "vllm.entrypoints.openai.api_server", "--host", "0.0.0.0", "--port", "8000",
            "--model", str(model), "--served-model-name", env["VLLM_SERVED_MODEL_NAME"]]
    assert out == head + v["command"] + env["VLLM_EXTRA_ARGS"].split()
