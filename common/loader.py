"""Load a model and tokenizer from whatever the reader names with ``--model`` (and ``--load-format``).

A model spec is one of:

* ``smollm2-135m`` (the default) or ``embedded``: the embedded model, prepared on first use;
* a local Hugging Face folder (``config.json`` + safetensors), or a path to a ``config.json``;
* a hub id such as ``meta-llama/Meta-Llama-3-8B``, which works where the reader is online;
* with ``--load-format dummy``, a preset name (``llama-3-8b``, ``llama-3-70b``, ``mixtral-8x7b``,
  ``qwen2.5-7b``, ``smollm2-135m``) or any of the above: random weights with the real shapes, for
  throughput work on a GPU without downloading weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from common.models import ensure_model
from common.presets import EMBEDDED, EMBEDDED_NAMES, get_preset, is_preset  # EMBEDDED: re-exported

LOAD_FORMATS = ("auto", "dummy")


class ModelLoadError(RuntimeError):
    """The model could not be found or loaded; the message says what to do."""


def resolve_model_path(spec: str | None) -> str:
    """Turn a spec into something ``from_pretrained`` accepts: a local folder or a hub id."""
    if spec is None or spec.lower() in EMBEDDED_NAMES:
        return str(ensure_model())
    p = Path(spec).expanduser()
    if p.is_file() and p.name == "config.json":
        return str(p.parent)
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise ModelLoadError(f"{p} has no config.json; point --model at a Hugging Face model folder.")
        return str(p)
    if spec.startswith((".", "/", "~")):
        raise ModelLoadError(f"model folder {spec} does not exist; check the path or use --model {EMBEDDED}.")
    return spec  # a hub id


def load_config(spec: str | None) -> dict[str, Any]:
    """A model's config as a plain dict: from a preset name, a folder, a config.json or a hub id."""
    if spec is not None and spec.lower() not in EMBEDDED_NAMES and is_preset(spec):
        return get_preset(spec)
    path = resolve_model_path(spec)
    cfg_file = Path(path) / "config.json"
    if cfg_file.is_file():
        return json.loads(cfg_file.read_text())
    try:
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(path).to_dict()
    except Exception as exc:  # noqa: BLE001 - any hub/network failure becomes one sentence
        raise ModelLoadError(
            f"could not load a config for {spec!r} ({type(exc).__name__}); use a preset name "
            f"({EMBEDDED}, llama-3-8b, ...) or a local folder."
        ) from exc


def load_tokenizer(spec: str | None = None):
    """The tokenizer for a model spec (presets other than the embedded model have none here)."""
    from transformers import AutoTokenizer

    path = resolve_model_path(spec)
    try:
        return AutoTokenizer.from_pretrained(path)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"could not load a tokenizer from {path!r}: {exc}") from exc


def load_hf_model(
    spec: str | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    load_format: str = "auto",
):
    """A ``transformers`` causal LM in eval mode. ``load_format='dummy'`` gives random weights."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if load_format not in LOAD_FORMATS:
        raise ModelLoadError(f"unknown --load-format {load_format!r}; choose one of {', '.join(LOAD_FORMATS)}.")
    if load_format == "dummy":
        cfg_dict = load_config(spec)
        model_type = cfg_dict.get("model_type", "llama")
        config = AutoConfig.for_model(model_type, **{k: v for k, v in cfg_dict.items() if k != "model_type"})
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config, dtype=dtype)
        return model.eval()
    path = resolve_model_path(spec)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except OSError as exc:
        raise ModelLoadError(
            f"could not load {spec!r} ({exc.__class__.__name__}): if it is a hub id you need network access "
            f"to the Hugging Face hub; otherwise pass a local folder or use the embedded model ({EMBEDDED})."
        ) from exc
    return model.to(device).eval()
