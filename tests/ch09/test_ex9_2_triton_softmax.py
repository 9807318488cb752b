"""Exercise 9.2: the reader's softmax is a Triton kernel, launched, and equals torch.softmax.

Two checks of the mechanism, not only of the numbers:

* static (runs everywhere, even without triton): the module's source defines a function decorated with
  ``triton.jit`` (or ``triton.autotune``/``heuristics`` around it), and ``softmax`` launches it with the
  ``kernel[grid](...)`` syntax;
* dynamic (needs triton; on a machine without a GPU the kernel runs in Triton's interpreter, because
  ``ch09_advanced.triton_ops`` sets ``TRITON_INTERPRET=1`` before triton is imported): the module holds a
  ``triton.jit`` kernel (a ``KernelInterface``), calling ``softmax`` launches it, torch's own softmax raises
  meanwhile (a torch fallback is not a kernel), the returned tensor is one the kernel was given (the kernel
  wrote it), and the values equal ``torch.softmax``. Skipped with a reason when triton is not installed, so
  ``make grade EX=9.2`` says INCOMPLETE there.
"""

from __future__ import annotations

import ast
import inspect
from contextlib import contextmanager

import pytest
import torch

from ch09_advanced.triton_ops import HAS_TRITON

needs_triton = pytest.mark.skipif(not HAS_TRITON,
                                  reason="triton is not installed (pip install triton); exercise 9.2 needs it")
JIT_DECORATORS = {"jit", "autotune", "heuristics"}


def _decorator_name(node: ast.expr) -> str:
    node = node.func if isinstance(node, ast.Call) else node
    return node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")


def check_source(mod) -> None:
    """A ``@triton.jit`` function in the module and a ``kernel[grid](...)`` launch inside ``softmax``."""
    tree = ast.parse(inspect.getsource(mod))
    kernels = {f.name for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)
               and any(_decorator_name(d) in JIT_DECORATORS for d in f.decorator_list)}
    assert kernels, "the module defines no @triton.jit kernel"
    launcher = next((f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.name == "softmax"), None)
    assert launcher is not None, "the module has no softmax function"
    launched = {c.func.value.id for c in ast.walk(launcher) if isinstance(c, ast.Call)
                and isinstance(c.func, ast.Subscript) and isinstance(c.func.value, ast.Name)}
    assert launched & kernels, f"softmax never launches {sorted(kernels)} with kernel[grid](...)"


def kernels(mod) -> list:
    from triton.runtime.jit import KernelInterface

    return [v for v in vars(mod).values() if isinstance(v, KernelInterface)]


@contextmanager
def watch_launches(mod):
    """Record the tensors given to each launch of the module's Triton kernels; torch's softmax raises inside."""
    found = kernels(mod)
    assert found, "the module defines no @triton.jit kernel"
    launches: list[list[torch.Tensor]] = []

    def refuse(*_a, **_k):
        raise AssertionError("softmax must compute in the Triton kernel, not call torch's softmax")

    with pytest.MonkeyPatch.context() as mp:
        for cls in {type(k) for k in found}:
            run = cls.run

            def counted(self, *args, _run=run, **kwargs):
                launches.append([a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)])
                return _run(self, *args, **kwargs)

            mp.setattr(cls, "run", counted)
        for owner, name in ((torch, "softmax"), (torch.nn.functional, "softmax"), (torch.Tensor, "softmax"),
                            (torch.special, "softmax"), (torch, "_softmax"), (torch.nn.functional, "log_softmax")):
            mp.setattr(owner, name, refuse)
        yield launches


def check_softmax(mod) -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    for rows, cols in ((6, 100), (3, 128), (1, 7)):
        x = (torch.randn(rows, cols) * 5).to(device)
        expected = torch.softmax(x, -1)
        with watch_launches(mod) as launches:
            got = mod.softmax(x)
        assert launches, "softmax returned without launching its Triton kernel"
        written = {t.untyped_storage().data_ptr() for args in launches for t in args}
        assert got.untyped_storage().data_ptr() in written, \
            "softmax must return the tensor its kernel wrote, not a result computed afterwards in torch"
        torch.testing.assert_close(got, expected)


def test_source_defines_a_jit_kernel_and_softmax_launches_it(exercise):
    check_source(exercise("ch09_advanced", "ex9_2_triton_softmax"))


@needs_triton
def test_triton_softmax_is_a_launched_kernel_that_matches_torch(exercise):
    check_softmax(exercise("ch09_advanced", "ex9_2_triton_softmax"))
