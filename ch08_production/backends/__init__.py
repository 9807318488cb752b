"""Serving backends behind one interface (:mod:`ch08_production.backends.base`); :func:`make_backend` builds one.

``engine`` is ch05's continuous-batching engine (the default when ch05 is installed), ``transformers``
a plain Hugging Face model, ``vllm`` a proxy to a running vLLM server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ch08_production.backends.base import (
    Backend,
    BackendError,
    BackendStats,
    BackendUnavailable,
    GenerationRequest,
    SamplingParams,
    StreamChunk,
    TokenLogprob,
)

if TYPE_CHECKING:
    from ch05_scheduling.config import EngineConfig

__all__ = ["Backend", "BackendError", "BackendStats", "BackendUnavailable", "GenerationRequest",
           "SamplingParams", "StreamChunk", "TokenLogprob", "make_backend", "engine_available"]


def engine_available() -> bool:
    """True when ch05's engine (and its async API) can be imported."""
    try:
        from ch08_production.backends.engine import EngineBackend  # noqa: F401
    except ImportError:
        return False
    return True


def make_backend(kind: str, model: str, *, model_name: str | None = None, max_model_len: int | None = None,
                 vllm_url: str = "http://127.0.0.1:8001", engine_config: EngineConfig | None = None,
                 quantization: str | None = None, **engine_kwargs: Any) -> Backend:
    """A backend by name. Raises ValueError with a sentence saying what to do when it cannot be built.

    ``engine_config`` (ch05's :class:`EngineConfig`, e.g. ``ServerConfig.engine``) and ``engine_kwargs``
    (fields to change in it) and ``quantization`` (ch06's packed int8/int4 at load) are used by the engine
    backend only; another backend given ``quantization`` is a ValueError."""
    if quantization is not None and kind != "engine":
        raise ValueError(f"--quantization {quantization} runs on ch06's kernels inside the engine backend; "
                         f"use --backend engine (vLLM takes its own quantized checkpoints as --model)")
    if kind == "transformers":
        from ch08_production.backends.hf import TransformersBackend

        return TransformersBackend(model, model_name, max_model_len)
    if kind == "vllm":
        from ch08_production.backends.vllm_proxy import VLLMProxyBackend

        return VLLMProxyBackend(vllm_url, model, model_name, max_model_len)
    if kind == "engine":
        try:
            from ch08_production.backends.engine import EngineBackend
        except ImportError as exc:
            raise ValueError(f"the ch05 engine is not available here ({exc}); use --backend transformers") from None
        return EngineBackend(model, model_name, max_model_len, config=engine_config, quantization=quantization,
                             **engine_kwargs)
    raise ValueError(f"unknown backend {kind!r}; choose engine, transformers or vllm")
