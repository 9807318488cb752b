"""Parallel sampling: one request, ``n`` completions, one prefill, shared KV blocks (book 4.4.3, 5.4.1).

A request with ``SamplingParams.n > 1`` becomes a :class:`SequenceGroup` of ``n`` sequences, one per
choice. Only the first, the *parent* (its id is the request id), enters the scheduler: its prompt is
prefilled once. The step that finishes the prefill samples ``n`` tokens from the prompt's last logits,
one per choice, each with that choice's own generator; the scheduler then *forks* the parent's block
table into every child (ch04's ``BlockManager.fork``: reference count + 1, nothing copied) and from
there on each choice is an ordinary running sequence. The first token a choice writes into the shared,
partially filled last prompt block makes the block manager hand out a fresh block and a
``CopyOnWrite(src, dst)``; the runner copies those blocks (``PagedKVCache.copy_blocks``) before the
step's forward, as vLLM does. Full prompt blocks stay shared until the last choice finishes.

Rules, stated once:

* **Seeds.** Choice ``i`` samples with ``seed + i`` when the request has a seed (ch04's
  :func:`~ch04_kvcache.sampling.choice_params`), so ``n = 4, seed = s`` gives token for token what four
  requests with seeds ``s .. s+3`` give. vLLM V1 uses the same seed rule, but fans a request out into
  ``n`` separate requests that share the prompt's full blocks through prefix caching, rather than forking.
* **Ids.** Children get negative sequence ids from the engine (``-1, -2, ...``), so they can never clash
  with request ids, which are >= 0.
* **Admission.** A group is admitted only when ``len(running) + n`` fits ``max_num_seqs`` (the seats of
  its children are held from admission until the fork), and ``add`` rejects ``n`` above what the policy
  can ever run at once.
* **Preemption.** Before the fork the group is one sequence and is preempted like one. After the fork
  every choice is preempted on its own, by recompute: it frees its references and later prefills its
  prompt and its own outputs again (it loses the sharing, not its tokens: its generator is kept).
* **Abort.** Aborting the request id aborts every choice still running.

:class:`CompletionOutput` is one choice as a caller sees it; the engine's ``RequestOutput.outputs``
holds all ``n`` (``python -m ch05_scheduling.parallel_sampling`` measures blocks and speed).

    python -m ch05_scheduling.sequence_group     # the block tables of a toy n = 3 request, step by step
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ch04_kvcache.sampling_params import SamplingParams, TokenLogprob, choice_params
from ch05_scheduling.sequence import Sequence


@dataclass(slots=True)
class SequenceGroup:
    """The ``n`` sequences of one request; ``seqs[i]`` is choice ``i``, ``seqs[0]`` the one prefilled."""

    request_id: int
    seqs: list[Sequence]
    forked: bool = False

    @property
    def parent(self) -> Sequence:
        return self.seqs[0]

    @property
    def children(self) -> list[Sequence]:
        return self.seqs[1:]

    @property
    def n(self) -> int:
        return len(self.seqs)

    @property
    def is_finished(self) -> bool:
        return all(s.is_finished for s in self.seqs)

    def index_of(self, seq_id: int) -> int:
        return next(i for i, s in enumerate(self.seqs) if s.seq_id == seq_id)

    def max_blocks(self, block_size: int, max_model_len: int) -> int:
        """Blocks the whole group may hold at worst: the prompt's full blocks once, the rest per choice."""
        p = self.parent
        shared, per_choice = worst_case_blocks(p.num_prompt_tokens, p.params.max_tokens, block_size, max_model_len)
        return shared + self.n * per_choice


def worst_case_blocks(prompt_len: int, max_tokens: int, block_size: int, max_model_len: int) -> tuple[int, int]:
    """``(shared, per_choice)``: the prompt's full blocks, held once by all choices (copy-on-write), and the
    blocks each choice may add at worst (its prompt tail and ``max_tokens`` outputs, within the context)."""
    worst = min(prompt_len + max_tokens, max_model_len)
    shared = prompt_len // block_size
    return shared, -(-worst // block_size) - shared


def make_group(request_id: int, prompt_token_ids: list[int], params: SamplingParams, child_ids: list[int],
               **seq_kwargs) -> SequenceGroup:
    """Choice 0 keeps ``request_id``; choice ``i`` gets ``child_ids[i - 1]`` and ``choice_params(params, i)``."""
    if len(child_ids) != params.n - 1:
        raise ValueError(f"n={params.n} needs {params.n - 1} child ids, got {len(child_ids)}")
    ids = [request_id, *child_ids]
    return SequenceGroup(request_id, [Sequence(sid, list(prompt_token_ids), choice_params(params, i), **seq_kwargs)
                                      for i, sid in enumerate(ids)])


@dataclass(slots=True)
class CompletionOutput:
    """One choice of a request: everything so far, plus what is new since the request's last output."""

    index: int
    token_ids: list[int]
    text: str
    new_token_ids: list[int]
    new_text: str
    finished: bool
    finish_reason: str | None
    logprobs: list[TokenLogprob] | None = None
    new_logprobs: list[TokenLogprob] | None = None


@dataclass(slots=True)
class GroupOutputs:
    """The latest state of each choice, so a request's output can list all ``n`` every time."""

    n: int
    latest: list[CompletionOutput | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.latest = [None] * self.n

    def update(self, index: int, out) -> None:
        """Record a member's ``RequestOutput`` (duck-typed: its token, text and finish fields)."""
        self.latest[index] = CompletionOutput(index, out.token_ids, out.text, out.new_token_ids, out.new_text,
                                              out.finished, out.finish_reason, out.logprobs, out.new_logprobs)

    def snapshot(self, stepped: set[int]) -> list[CompletionOutput]:
        """All choices; those not in ``stepped`` report no new tokens this time."""
        outs = []
        for i, c in enumerate(self.latest):
            assert c is not None, f"choice {i} has produced no output yet"
            if i not in stepped:
                c = replace(c, new_token_ids=[], new_text="",
                            new_logprobs=None if c.new_logprobs is None else [])
            outs.append(c)
        return outs


def main(argv: list[str] | None = None) -> int:
    from ch05_scheduling.scheduler import Scheduler, SchedulerConfig
    from common.cli import make_parser

    make_parser("python -m ch05_scheduling.sequence_group", __doc__).parse_args(argv)
    sched = Scheduler(SchedulerConfig(num_blocks=16, block_size=4, max_num_batched_tokens=16, max_num_seqs=4))
    group = make_group(0, list(range(10, 16)), SamplingParams(max_tokens=3, ignore_eos=True, n=3), [-1, -2])
    sched.add_group(group)
    bm = sched.block_manager
    step = 0
    while sched.has_unfinished:
        out = sched.schedule(float(step))
        sampled = {s.seq_id: 90 + step for s in out.scheduled if s.sample}
        sampled |= {cid: 90 + step for s in out.scheduled for cid in s.fork_ids}
        sched.update(out, sampled, float(step + 1))
        tables = {m.seq_id: bm.block_table(m.seq_id) for m in group.seqs if m.seq_id in bm}
        copies = [(c.src, c.dst) for c in out.copies]
        print(f"step {step}: ran {[s.seq_id for s in out.scheduled]}, copy-on-write {copies}, tables {tables}, "
              f"{bm.num_used_blocks} blocks used")
        step += 1
    print(f"outputs: {[m.output_token_ids for m in group.seqs]}; blocks used at the end: {bm.num_used_blocks}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
