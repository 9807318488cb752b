"""The model's shape as a validated dataclass (book 4.1: what a KV cache must hold is set by these numbers).

``ModelConfig.from_pretrained(folder)`` reads a Hugging Face ``config.json``; ``ModelConfig.from_dict``
accepts the dict form, in both the older layout (``rope_theta`` + ``rope_scaling``) and the newer one
(``rope_parameters``, transformers >= 5). Run ``python -m ch04_kvcache.config --model smollm2-135m`` to print
a model's config and its KV-cache bytes per token.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2")
SUPPORTED_ROPE_TYPES = ("default", "llama3", "linear")


@dataclass(slots=True)
class ModelConfig:
    """Architecture numbers of a Llama-family decoder (names follow the book, not HF)."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None  # e.g. {"rope_type": "llama3", "factor": 8.0, ...}
    rms_norm_eps: float = 1e-5
    tie_word_embeddings: bool = False
    max_position_embeddings: int = 2048
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    qkv_bias: bool = False  # Qwen2 has biases on q/k/v; Llama with attention_bias=True also on o_proj
    o_bias: bool = False
    model_type: str = "llama"
    extra: dict[str, Any] = field(default_factory=dict)  # unused HF keys, kept for reference

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads",
                     "num_kv_heads", "head_dim", "max_position_embeddings"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ModelConfig.{name} must be a positive integer, got {value!r}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads "
                             f"({self.num_kv_heads}) for grouped-query attention")
        if self.head_dim % 2:
            raise ValueError(f"head_dim must be even for RoPE, got {self.head_dim}")
        if self.rope_theta <= 0 or self.rms_norm_eps <= 0:
            raise ValueError("rope_theta and rms_norm_eps must be positive")
        if self.rope_scaling is not None:
            rope_type = self.rope_scaling.get("rope_type", self.rope_scaling.get("type", "default"))
            if rope_type not in SUPPORTED_ROPE_TYPES:
                raise ValueError(f"rope scaling type {rope_type!r} is not supported here; "
                                 f"supported: {', '.join(SUPPORTED_ROPE_TYPES)}")
            if rope_type == "llama3":
                missing = {"factor", "low_freq_factor", "high_freq_factor",
                           "original_max_position_embeddings"} - set(self.rope_scaling)
                if missing:
                    raise ValueError(f"llama3 rope scaling needs {sorted(missing)}")

    # ------------------------------------------------------------------ derived numbers
    @property
    def group_size(self) -> int:
        """Query heads per KV head (1 = MHA, num_heads = MQA)."""
        return self.num_heads // self.num_kv_heads

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        if self.eos_token_id is None:
            return ()
        if isinstance(self.eos_token_id, int):
            return (self.eos_token_id,)
        return tuple(self.eos_token_id)

    def kv_bytes_per_token(self, bytes_per_element: float = 4) -> float:
        """K and V for one token across all layers: 2 * layers * kv_heads * head_dim * bytes."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * bytes_per_element

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Build from a Hugging Face config dict (``config.json`` contents)."""
        model_type = d.get("model_type", "llama")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(f"model_type {model_type!r} is not a Llama-family decoder this model implements; "
                             f"supported: {', '.join(SUPPORTED_MODEL_TYPES)}")
        try:
            hidden = int(d["hidden_size"])
            heads = int(d["num_attention_heads"])
            rope_theta, rope_scaling = _rope_from_dict(d)
            attention_bias = bool(d.get("attention_bias", False))
            return cls(
                vocab_size=int(d["vocab_size"]),
                hidden_size=hidden,
                intermediate_size=int(d["intermediate_size"]),
                num_layers=int(d["num_hidden_layers"]),
                num_heads=heads,
                num_kv_heads=int(d.get("num_key_value_heads") or heads),
                head_dim=int(d.get("head_dim") or hidden // heads),
                rope_theta=rope_theta,
                rope_scaling=rope_scaling,
                rms_norm_eps=float(d.get("rms_norm_eps", 1e-6 if model_type == "qwen2" else 1e-5)),
                tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
                max_position_embeddings=int(d.get("max_position_embeddings", 2048)),
                bos_token_id=d.get("bos_token_id"),
                eos_token_id=d.get("eos_token_id"),
                qkv_bias=attention_bias or model_type == "qwen2",
                o_bias=attention_bias,
                model_type=model_type,
            )
        except KeyError as exc:
            raise ValueError(f"config is missing the key {exc.args[0]!r}") from None

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> ModelConfig:
        """Read ``folder/config.json`` (a folder or the file itself)."""
        p = Path(folder)
        cfg_file = p if p.name == "config.json" else p / "config.json"
        if not cfg_file.is_file():
            raise FileNotFoundError(f"{cfg_file} does not exist; point at a Hugging Face model folder")
        return cls.from_dict(json.loads(cfg_file.read_text()))


def _rope_from_dict(d: dict[str, Any]) -> tuple[float, dict[str, Any] | None]:
    """(theta, scaling) from either ``rope_parameters`` (new) or ``rope_theta``/``rope_scaling`` (old)."""
    params = d.get("rope_parameters")
    if isinstance(params, dict) and params:
        theta = float(params.get("rope_theta", d.get("rope_theta", 10000.0)))
        scaling = {k: v for k, v in params.items() if k != "rope_theta"}
    else:
        theta = float(d.get("rope_theta", 10000.0))
        scaling = dict(d["rope_scaling"]) if d.get("rope_scaling") else None
    if scaling is not None:
        rope_type = scaling.get("rope_type", scaling.get("type", "default"))
        scaling["rope_type"] = rope_type
        scaling.pop("type", None)
        if rope_type == "default" and set(scaling) <= {"rope_type", "partial_rotary_factor"}:
            scaling = None
    return theta, scaling


def main(argv: list[str] | None = None) -> int:
    from common.cli import friendly_errors, make_parser
    from common.loader import EMBEDDED, load_config

    parser = make_parser("python -m ch04_kvcache.config", __doc__)
    parser.add_argument("--model", default=EMBEDDED, help="preset, local HF folder or hub id")
    args = parser.parse_args(argv)
    with friendly_errors():
        cfg = ModelConfig.from_dict(load_config(args.model))
        for key, value in cfg.to_dict().items():
            if key != "extra":
                print(f"{key:>24}: {value}")
        print(f"{'kv bytes/token (fp16)':>24}: {cfg.kv_bytes_per_token(2):,.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
