"""The model runner: turn a :class:`SchedulerOutput` into tensors, run one forward, sample (5.3.2).

Book sections: 5.3.2 Continuous Batching原理 (prefill chunks and decode tokens of many requests in ONE
flattened forward), 5.4.3 迭代级调度.

Every scheduled sequence contributes its new tokens to one flat batch of N tokens (no padding); the
:class:`AttentionMetadata` of ch04 says which rows belong to whom, where each new token's K/V go
(``slot_mapping``) and which blocks hold each context. Only sequences whose step reaches their end are
projected to the vocabulary (``logits_indices``): a partial prefill chunk needs no logits. The L rows are
sampled together by ch04's :func:`~ch04_kvcache.sampling.sample_batch`, each with its own
:class:`SamplingParams` (temperature, top-k/top-p/min-p, penalties over its own prompt and output,
logprobs); a request with a ``seed`` owns a ``torch.Generator`` seeded once, so its tokens are the ones
ch04's ``generate(seed=...)`` draws, whatever it is batched with. The step that ends the prefill of an
``n > 1`` request samples its row once per choice (``ScheduledSeq.fork_ids``, each choice with its own
params and generator). Rows of requests with ``structured_outputs`` are masked by their grammar before
sampling and accept their token after (``structured.py``; the engine sets ``runner.structured`` when
the first such request arrives). :meth:`ModelRunner.execute` returns a
:class:`RunnerOutput` message: the sampled token of each request and, where asked for, its logprobs.

``python -m ch05_scheduling.model_runner --smoke`` runs one mixed prefill+decode batch on a tiny model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from ch04_kvcache.model import LlamaModel
from ch04_kvcache.paged_attention import AttentionMetadata
from ch04_kvcache.paged_cache import PagedKVCache
from ch04_kvcache.sampling import TokenLogprob, sample_batch
from ch05_scheduling.scheduler import SchedulerOutput

if TYPE_CHECKING:
    from ch05_scheduling.structured import StructuredOutputs


@dataclass(slots=True)
class ModelInput:
    """The tensors of one step. N = total new tokens, S = sequences, L = sequences that sample."""

    input_ids: torch.Tensor      # (N,) long
    positions: torch.Tensor      # (N,) long
    meta: AttentionMetadata
    sample_ids: list[int]        # seq ids of the L sampled rows, in logits order


@dataclass(slots=True)
class RunnerOutput:
    """What one step produced: ``{seq_id: token}`` for the sequences that sampled, and the logprobs of
    those that asked for them."""

    sampled: dict[int, int] = field(default_factory=dict)
    logprobs: dict[int, TokenLogprob] = field(default_factory=dict)
    grammar_done: list[int] = field(default_factory=list)   # seq ids whose grammar terminated this step


class ModelRunner:
    """Owns the paged KV cache and the per-request random generators."""

    def __init__(self, model: LlamaModel, num_blocks: int, block_size: int, seed: int = 0) -> None:
        self.model = model
        self.device = model.device
        self.cache = PagedKVCache(model.config, num_blocks, block_size, model.device, model.dtype)
        self.shared_generator = torch.Generator().manual_seed(seed)  # requests without their own seed
        self._generators: dict[int, torch.Generator] = {}
        self.structured: StructuredOutputs | None = None   # grammar masks, once a request asks for one

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
    def execute(self, out: SchedulerOutput) -> RunnerOutput:
        """Run one step; sample the sequences that reached their end (see :class:`RunnerOutput`)."""
        if out.is_empty:
            return RunnerOutput()
        # copy-on-write first (forked sequences about to write into a block they shared), as vLLM's
        # block copies run before the step's forward
        self.cache.copy_blocks([(c.src, c.dst) for c in out.copies])
        inp = self.prepare(out)
        logits = self.model.forward_batch(inp.input_ids, inp.positions, self.cache, inp.meta)  # (L, V)
        by_id = {s.seq_id: s for s in out.scheduled if s.sample}
        # one row per sampled sequence: (seq id, params, prompt, outputs, row of logits)
        rows = []
        for j, sid in enumerate(inp.sample_ids):
            s = by_id[sid]
            rows.append((sid, s.params, s.prompt_token_ids, s.output_token_ids, j))
            rows += [(cid, cp, s.prompt_token_ids, [], j) for cid, cp in zip(s.fork_ids, s.fork_params, strict=True)]
        if len(rows) > logits.shape[0]:             # parallel sampling: the prompt's row once per choice
            logits = logits[[r[4] for r in rows]]
        ids = [r[0] for r in rows]
        params = [r[1] for r in rows]
        if self.structured is not None:
            logits = self.structured.mask(logits, ids, params)
        res = RunnerOutput()
        if all(p.greedy and not p.has_penalties and p.logprobs is None for p in params):
            best = logits.argmax(dim=-1).tolist()   # the common case: one argmax for the whole batch
            res.sampled = dict(zip(ids, best, strict=True))
        else:
            samples = sample_batch(logits, params, [self._generator(r[0], r[1].seed) for r in rows],
                                   [r[2] for r in rows], [r[3] for r in rows])
            for sid, smp in zip(ids, samples, strict=True):
                res.sampled[sid] = smp.token_id
                if smp.logprob is not None:
                    res.logprobs[sid] = smp.logprob
        if self.structured is not None:
            res.grammar_done = self.structured.accept(res.sampled)
        return res

    def _generator(self, seq_id: int, seed: int | None) -> torch.Generator:
        if seed is None:
            return self.shared_generator
        gen = self._generators.get(seq_id)
        if gen is None:
            gen = self._generators[seq_id] = torch.Generator().manual_seed(seed)
        return gen

    def release(self, seq_id: int) -> None:
        """Forget a finished request's generator (and grammar matcher)."""
        self._generators.pop(seq_id, None)
        if self.structured is not None:
            self.structured.release(seq_id)


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
            res = runner.execute(out)
            desc = ", ".join(f"seq {s.seq_id}: {s.num_new_tokens} tokens @ {s.start_pos}" for s in out.scheduled)
            print(f"step {step}: [{desc}] -> sampled {res.sampled}")
            sched.update(out, res.sampled, float(step + 1), res.logprobs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
