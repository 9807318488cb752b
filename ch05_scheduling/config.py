"""The engine's configuration, in one dataclass with no torch in it (book 5.6; served by ch08).

:class:`EngineConfig` holds every knob of the engine: the model, the KV-cache size, the scheduler's
budgets, the policy and the CPU kernels. Each field a deployment turns carries its help text in the
field's ``metadata`` (``help``, and ``choices`` where the values are a closed set), so ch08's server
generates its ``--max-num-seqs`` ... flags from this class: adding an engine setting is one field here,
not five edits across two chapters. :func:`served_fields` lists them.

The module imports no torch (ch08 parses its flags, and answers ``--help``, before torch loads), like
the scheduler whose :class:`SchedulerConfig` it builds.
"""

from __future__ import annotations

from dataclasses import Field, dataclass, field, fields

from ch05_scheduling.policies import POLICY_NAMES
from ch05_scheduling.scheduler import SchedulerConfig
from common.errors import UsageError
from common.presets import EMBEDDED

DECODE_KERNELS = ("auto", "cpp", "torch")


def _knob(default, help: str, choices: tuple[str, ...] | None = None):  # noqa: A002 - argparse's word
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass(slots=True)
class EngineConfig:
    """Model + cache + scheduler knobs; the CLI defaults of ch05's scripts and ch08's server come from here."""

    model: str = EMBEDDED
    device: str = "cpu"
    dtype: str = "auto"
    load_format: str = "auto"
    max_model_len: int = 2048        # ch08 sets it from the model's context (its own --max-model-len)
    kv_cache_mib: int = _knob(512, "KV-cache size in MiB (sizes the block pool unless --num-blocks is given)")
    num_blocks: int | None = _knob(None, "KV blocks in the pool (overrides --kv-cache-mib)")
    block_size: int = _knob(16, "tokens per KV block")
    max_num_seqs: int = _knob(32, "most sequences batched per step")
    max_num_batched_tokens: int = _knob(512, "token budget per step (chunked prefill)")
    enable_chunked_prefill: bool = _knob(True, "split long prompts over steps within the token budget")
    enable_prefix_caching: bool = _knob(False, "share KV blocks of common prompt prefixes")
    policy: str = _knob("continuous", "scheduling policy (ch05_scheduling.policies)", POLICY_NAMES)
    seed: int = _knob(0, "seed of the engine's sampler for requests that send none")
    cpu_prepack: bool = _knob(True, "oneDNN-packed linears on CPU fp32 (ch05 cpu_linear.py)")
    decode_kernel: str = _knob("auto", "decode attention: auto = ch04's C++ paged operator on CPU fp32 when it "
                               "builds, cpp = require it, torch = gather + SDPA", DECODE_KERNELS)

    def __post_init__(self) -> None:
        for name in ("kv_cache_mib", "block_size", "max_num_seqs", "max_num_batched_tokens", "max_model_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(f"{name} must be an integer >= 1, got {value!r}")
        if self.num_blocks is not None and self.num_blocks < 1:
            raise UsageError(f"num_blocks must be >= 1 (or None to size the pool from kv_cache_mib), "
                             f"got {self.num_blocks}")
        for f in served_fields(type(self)):
            choices = f.metadata["choices"]
            if choices and getattr(self, f.name) not in choices:
                raise UsageError(f"{f.name} must be one of {', '.join(choices)}, got {getattr(self, f.name)!r}")

    def scheduler_config(self, num_blocks: int) -> SchedulerConfig:
        return SchedulerConfig(num_blocks=num_blocks, block_size=self.block_size, max_num_seqs=self.max_num_seqs,
                               max_num_batched_tokens=self.max_num_batched_tokens,
                               enable_chunked_prefill=self.enable_chunked_prefill,
                               enable_prefix_caching=self.enable_prefix_caching, max_model_len=self.max_model_len)


def served_fields(config_class: type = EngineConfig) -> list[Field]:
    """The fields a server exposes as flags: those with help text (not model, device, dtype: ch08 owns them)."""
    return [f for f in fields(config_class) if f.metadata.get("help")]
