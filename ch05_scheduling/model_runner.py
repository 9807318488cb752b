"""The model runner: turn a :class:`SchedulerOutput` into tensors, run one forward, sample (5.3.2).

Book sections: 5.3.2 Continuous Batching原理 (prefill chunks and decode tokens of many requests in ONE
flattened forward), 5.4.3 迭代级调度.

Every scheduled sequence contributes its new tokens to one flat batch of N tokens (no padding); the
:class:`AttentionMetadata` of ch04 says which rows belong to whom, where each new token's K/V go
(``slot_mapping``) and which blocks hold each context. Only sequences whose step reaches their end are
projected to the vocabulary (``logits_indices``): a partial prefill chunk needs no logits. Sampling is
per request (temperature, top-p, top-k) with ch04's :func:`sample_next`; a request with a ``seed`` owns a
``torch.Generator`` seeded once, so its tokens are the ones ch04's ``generate(seed=...)`` draws, whatever it
is batched with.

``python -m ch05_scheduling.model_runner --smoke`` runs one mixed prefill+decode batch on a tiny model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ch04_kvcache.generate import sample_next
from ch04_kvcache.model import LlamaModel
from ch04_kvcache.paged_attention import AttentionMetadata
from ch04_kvcache.paged_cache import PagedKVCache
from ch05_scheduling.scheduler import SchedulerOutput


@dataclass(slots=True)
class ModelInput:
    """The tensors of one step. N = total new tokens, S = sequences, L = sequences that sample."""

    input_ids: torch.Tensor      # (N,) long
    positions: torch.Tensor      # (N,) long
    meta: AttentionMetadata
    sample_ids: list[int]        # seq ids of the L sampled rows, in logits order


class ModelRunner:
    """Owns the paged KV cache and the per-request random generators."""

    def __init__(self, model: LlamaModel, num_blocks: int, block_size: int, seed: int = 0) -> None:
        self.model = model
        self.device = model.device
        self.cache = PagedKVCache(model.config, num_blocks, block_size, model.device, model.dtype)
        self.shared_generator = torch.Generator().manual_seed(seed)  # requests without their own seed
        self._generators: dict[int, torch.Generator] = {}

    def prepare(self, out: SchedulerOutput) -> ModelInput:
        ids: list[int] = []
        pos: list[int] = []
        slots: list[int] = []
        logits_rows: list[int] = []
        sample_ids: list[int] = []
        for s in out.scheduled:
            ids.extend(s.token_ids)
            pos.extend(range(s.start_pos, s.context_len))
            slots.extend(s.slot_mapping)
            if s.sample:
                logits_rows.append(len(ids) - 1)   # the last new token of this sequence
                sample_ids.append(s.seq_id)
        dev = self.device
        meta = AttentionMetadata(
            query_lens=[s.num_new_tokens for s in out.scheduled],
            context_lens=[s.context_len for s in out.scheduled],
            block_tables=[s.block_table for s in out.scheduled],
            slot_mapping=torch.tensor(slots, dtype=torch.long, device=dev),
            logits_indices=torch.tensor(logits_rows, dtype=torch.long, device=dev),
        )
        return ModelInput(torch.tensor(ids, dtype=torch.long, device=dev),
                          torch.tensor(pos, dtype=torch.long, device=dev), meta, sample_ids)

    @torch.inference_mode()
    def execute(self, out: SchedulerOutput) -> dict[int, int]:
        """Run one step; return ``{seq_id: sampled token}`` for the sequences that reached their end."""
        if out.is_empty:
            return {}
        for cow in out.copies:
            self.cache.copy_block(cow.src, cow.dst)
        inp = self.prepare(out)
        logits = self.model.forward_batch(inp.input_ids, inp.positions, self.cache, inp.meta)  # (L, V)
        params = {s.seq_id: s.params for s in out.scheduled if s.sample}
        sampled: dict[int, int] = {}
        greedy_rows = [i for i, sid in enumerate(inp.sample_ids) if params[sid].greedy]
        if greedy_rows:
            best = logits[greedy_rows].argmax(dim=-1).tolist()   # one argmax for the whole greedy group
            for row, tok in zip(greedy_rows, best, strict=True):
                sampled[inp.sample_ids[row]] = tok
        for row, sid in enumerate(inp.sample_ids):
            p = params[sid]
            if p.greedy:
                continue
            sampled[sid] = sample_next(logits[row], p.temperature, p.top_p, p.top_k, self._generator(sid, p.seed))
        return sampled

    def _generator(self, seq_id: int, seed: int | None) -> torch.Generator:
        if seed is None:
            return self.shared_generator
        gen = self._generators.get(seq_id)
        if gen is None:
            gen = self._generators[seq_id] = torch.Generator().manual_seed(seed)
        return gen

    def release(self, seq_id: int) -> None:
        """Forget a finished request's generator."""
        self._generators.pop(seq_id, None)


def main(argv: list[str] | None = None) -> int:
    from ch05_scheduling.scheduler import Scheduler, SchedulerConfig
    from ch05_scheduling.sequence import SamplingParams, Sequence
    from common.cli import add_common_args, friendly_errors, make_parser

    parser = make_parser("python -m ch05_scheduling.model_runner", __doc__)
    add_common_args(parser)
    args = parser.parse_args(argv)
    with friendly_errors():
        spec = "smollm2-135m" if not args.smoke else args.model
        model = LlamaModel.from_pretrained(spec, load_format="dummy" if args.smoke else args.load_format)
        sched = Scheduler(SchedulerConfig(num_blocks=64, block_size=16, max_num_batched_tokens=64))
        runner = ModelRunner(model, 64, 16, seed=args.seed)
        sched.add(Sequence(0, list(range(1, 30)), SamplingParams(max_tokens=4)))
        sched.add(Sequence(1, list(range(5, 9)), SamplingParams(max_tokens=4)))
        for step in range(3):
            out = sched.schedule(float(step))
            sampled = runner.execute(out)
            desc = ", ".join(f"seq {s.seq_id}: {s.num_new_tokens} tokens @ {s.start_pos}" for s in out.scheduled)
            print(f"step {step}: [{desc}] -> sampled {sampled}")
            sched.update(out, sampled, float(step + 1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
