"""Device and dtype selection shared by every script (``--device``, ``--dtype``).

``auto`` picks CUDA when present, then Apple's MPS, then the CPU. A request the machine cannot honour
(``--device cuda`` without a GPU) raises :class:`DeviceError` whose message says what to do; the CLI
helpers turn it into one line instead of a traceback.
"""

from __future__ import annotations

import torch

DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "fp16": torch.float16,
    "float16": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
}
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
DTYPE_CHOICES = ("auto", "fp32", "fp16", "bf16")


class DeviceError(RuntimeError):
    """The requested device or dtype is not usable here; the message says what to do instead."""


def has_cuda() -> bool:
    return torch.cuda.is_available()


def has_mps() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def pick_device(name: str = "auto") -> torch.device:
    """Resolve ``auto|cpu|cuda|cuda:N|mps`` to a usable :class:`torch.device`."""
    name = (name or "auto").lower()
    if name == "auto":
        if has_cuda():
            return torch.device("cuda")
        if has_mps():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not has_cuda():
            raise DeviceError(
                f"--device {name} was requested but this PyTorch sees no CUDA GPU "
                f"(torch {torch.__version__}); use --device cpu, or install a CUDA build of torch on a GPU machine."
            )
        return torch.device(name)
    if name == "mps":
        if not has_mps():
            raise DeviceError("--device mps was requested but MPS is not available; use --device cpu.")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise DeviceError(f"unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)} (or cuda:N).")


def pick_dtype(name: str = "auto", device: torch.device | str = "cpu") -> torch.dtype:
    """Resolve a dtype name. ``auto`` is fp32 on CPU (exact and fastest without AMX) and bf16 on GPU."""
    device = torch.device(device)
    name = (name or "auto").lower()
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if name not in DTYPES:
        raise DeviceError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPE_CHOICES)}.")
    dtype = DTYPES[name]
    if device.type == "mps" and dtype == torch.bfloat16:
        raise DeviceError("bf16 is not supported on MPS here; use --dtype fp16 or fp32.")
    return dtype


def dtype_name(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}.get(dtype, str(dtype))


def synchronize(device: torch.device | str) -> None:
    """Wait for queued kernels so a timer measures work, not launches."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
