"""Exercise 3.1, plausible but wrong: it checks that the interpreter exists and runs, but reads the torch and
vLLM versions with importlib.metadata in its own process (the grader's), not in the environment it was given."""

import importlib.metadata
import subprocess
from pathlib import Path

from ch03_env.solutions.ex3_1_vllm_env import EnvReport


def _version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def inspect_environment(python, *, generate=False, model_dir=None, prompt="What is the capital of France?",
                        timeout_s=900.0):
    exe = str(python)
    if not Path(exe).exists():
        return EnvReport(exe, None, None, None, None, (f"{exe} does not exist",))
    py = subprocess.run([exe, "-c", "import platform; print(platform.python_version())"],
                        capture_output=True, text=True).stdout.strip()
    torch_v, vllm_v = _version("torch"), _version("vllm")
    problems = () if vllm_v else ("vllm is not installed",)
    return EnvReport(exe, py, torch_v, vllm_v, None, problems)
