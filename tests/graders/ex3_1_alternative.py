"""Exercise 3.1, a different correct answer: imports torch and vllm in the child and prints their
``__version__`` as key=value lines; generates with ``LLM.generate`` on a raw prompt, the text printed
between markers; its own report dataclass."""

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

ASK = """
import platform
print("python=" + platform.python_version())
for name in ("torch", "vllm"):
    try:
        print(name + "=" + __import__(name).__version__)
    except ImportError:
        print(name + "=")
"""

RUN = """
import sys
from vllm import LLM, SamplingParams
out = LLM(model=sys.argv[1], dtype="float32", enforce_eager=True).generate([sys.argv[2]], SamplingParams(
    temperature=0, max_tokens=16))
print("<<<" + out[0].outputs[0].text.replace(chr(10), " ") + ">>>")
"""


@dataclass
class Report:
    python_exe: str
    python_version: str | None = None
    torch_version: str | None = None
    vllm_version: str | None = None
    answer: str | None = None
    problems: list = field(default_factory=list)

    @property
    def ok(self):
        return not self.problems


def inspect_environment(python, *, generate=False, model_dir=None, prompt="What is the capital of France?",
                        timeout_s=900.0):
    rep = Report(str(python))
    if not os.access(rep.python_exe, os.X_OK):
        rep.problems.append(f"no executable interpreter at {rep.python_exe}")
        return rep
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    out = subprocess.run([rep.python_exe, "-c", ASK], capture_output=True, text=True, env=env, timeout=120)
    got = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    rep.python_version, rep.torch_version, rep.vllm_version = (got.get(k) or None for k in ("python", "torch",
                                                                                          "vllm"))
    for name in ("torch", "vllm"):
        if not got.get(name):
            rep.problems.append(f"{name} cannot be imported by {rep.python_exe}")
    if generate and rep.ok:
        if model_dir is None:
            from common.models import ensure_model

            model_dir = ensure_model()
        gen = subprocess.run([rep.python_exe, "-c", RUN, str(Path(model_dir)), prompt], capture_output=True,
                             text=True, env=env, timeout=timeout_s)
        if "<<<" in gen.stdout:
            rep.answer = gen.stdout.split("<<<", 1)[1].split(">>>", 1)[0]
        else:
            rep.problems.append("the vLLM generation printed no answer")
    return rep
