"""The continuous-batching engine: schedule -> run -> postprocess, one iteration at a time (5.3, 5.4).

Book sections: 5.3 Continuous Batching, 5.4.1 请求生命周期管理, 5.4.3 迭代级调度.

    engine = LLMEngine(EngineConfig(max_num_seqs=16))
    outs = engine.generate(["What is the capital of France?"], SamplingParams(max_tokens=32))

A request the engine can never run (a prompt past the context, ``n`` or ``max_tokens`` beyond what the
cache holds) raises :class:`RequestRejected` (a ``UsageError``) from :meth:`LLMEngine.add_request`; a
server reads :attr:`LLMEngine.max_model_len`, :meth:`LLMEngine.max_choices` and :meth:`LLMEngine.stats`
and nothing else of the engine's insides.

One :meth:`LLMEngine.step` asks the :class:`Scheduler` what to run, lets the :class:`ModelRunner` run it,
then feeds the sampled tokens back, detokenizes, applies stop strings and frees what finished (nano-vllm's
loop; vLLM's split into dataclass messages). Requests sample with ch04's ``SamplingParams`` (penalties,
min_p, seeds, logprobs: see ``model_runner.py``); a :class:`RequestOutput` carries the request's
``logprobs`` when it asked for them. A request with ``n > 1`` is prefilled once and forked into ``n``
choices on shared copy-on-write blocks (``sequence_group.py``); its ``RequestOutput.outputs`` lists the
``n`` :class:`CompletionOutput` s. A request with ``structured_outputs`` (JSON schema, regex, choice,
grammar) has its grammar compiled when it is added and its logits masked every step (``structured.py``);
it finishes ``"stop"`` when its grammar is complete. Every step's shape and wall time is kept in
``engine.step_log`` for ``calibrate.py``. The async streaming API for a server is in ``async_engine.py``.

    python -m ch05_scheduling.engine --smoke          # a few chat prompts through the engine
"""

from __future__ import annotations

import time
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from ch04_kvcache.model import LlamaModel
from ch04_kvcache.paged_attention import DecodeKernel
from ch04_kvcache.paged_decode_cpu import kernel as cpp_decode_kernel
from ch04_kvcache.paged_decode_cpu import make_decode_kernel
from ch05_scheduling.admission import RequestRejected  # noqa: F401 - re-exported for callers
from ch05_scheduling.config import EngineConfig
from ch05_scheduling.cost_model import StepRecord, step_features
from ch05_scheduling.cpu_linear import PackedLinear, can_prepack, prepack_linears
from ch05_scheduling.model_runner import ModelRunner
from ch05_scheduling.policies import Policy, make_policy
from ch05_scheduling.scheduler import Scheduler
from ch05_scheduling.sequence import FinishReason, SamplingParams, Sequence, TokenLogprob
from ch05_scheduling.sequence_group import CompletionOutput, GroupOutputs, SequenceGroup, make_group
from common.cli import UsageError
from common.device import pick_device, pick_dtype

if TYPE_CHECKING:
    from ch05_scheduling.structured import StructuredOutputs

def pick_decode_kernel(choice: str, device: torch.device, dtype: torch.dtype) -> DecodeKernel | None:
    """The kernel ``EngineConfig.decode_kernel`` asks for on this device/dtype (None = gather + SDPA)."""
    if choice == "torch":
        return None
    kernel, reason = make_decode_kernel(device, dtype)
    if kernel is None and choice == "cpp":
        raise UsageError(f"decode_kernel='cpp' is unavailable: {reason} (use 'auto' or 'torch')")
    return kernel


def decode_kernel_name(kernel: DecodeKernel | None) -> str:
    """What a model's decode steps run: 'torch' (gather + SDPA), 'cpp' (ch04's operator), else its name."""
    if kernel is None:
        return "torch"
    if kernel is cpp_decode_kernel:
        return "cpp"
    return getattr(kernel, "__module__", "") + "." + getattr(kernel, "__qualname__", type(kernel).__name__)


@dataclass(slots=True)
class RequestOutput:
    """What a caller sees of a request after a step: everything so far, plus this step's delta."""

    request_id: int
    prompt_token_ids: list[int]
    token_ids: list[int]
    text: str
    new_token_ids: list[int]
    new_text: str
    finished: bool
    finish_reason: str | None
    num_cached_tokens: int = 0
    num_preemptions: int = 0
    arrival_time: float = 0.0
    first_token_time: float | None = None
    finish_time: float | None = None
    # per output token (raw-model logprob, rank, top-k), only when SamplingParams.logprobs is set
    logprobs: list[TokenLogprob] | None = None
    new_logprobs: list[TokenLogprob] | None = None
    # n > 1: every choice (the fields above are then choice 0's; finished = all choices finished)
    outputs: list[CompletionOutput] | None = None

    @property
    def completions(self) -> list[CompletionOutput]:
        """The request's choices, one for n = 1: what a caller that handles any n reads."""
        if self.outputs is not None:
            return self.outputs
        return [CompletionOutput(0, self.token_ids, self.text, self.new_token_ids, self.new_text, self.finished,
                                 self.finish_reason, self.logprobs, self.new_logprobs)]


@dataclass(frozen=True, slots=True)
class EngineStats:
    """A snapshot of the engine for a server's ``/metrics`` and admission (``LLMEngine.stats()``).

    The prefix-cache counters are cumulative and in tokens, as vLLM counts them (``vllm:prefix_cache_queries``
    / ``_hits``): full prompt blocks looked up, and found, times the block size."""

    num_running: int
    num_waiting: int
    kv_usage: float                  # 0..1: used blocks / pool
    num_used_blocks: int
    num_total_blocks: int
    num_preemptions: int             # cumulative
    prefix_cache_queries: int        # tokens
    prefix_cache_hits: int           # tokens
    num_structured_requests: int     # cumulative: requests added with a grammar (JSON schema, regex, choice)


@dataclass
class _Detok:
    emitted_tokens: int = 0
    emitted_text: str = ""
    stopped: bool = False     # a stop string was found: seq.output_text is final (truncated)


@dataclass
class LLMEngine:
    """See the module docstring. Pass ``model``/``tokenizer`` to reuse loaded ones (tests do)."""

    config: EngineConfig = field(default_factory=EngineConfig)
    model: LlamaModel | None = None
    tokenizer: object | None = None
    policy: Policy | None = None

    def __post_init__(self) -> None:
        cfg = self.config
        if self.model is None:
            device = pick_device(cfg.device)
            dtype = pick_dtype(cfg.dtype, device)
            decode_kernel = pick_decode_kernel(cfg.decode_kernel, device, dtype)  # before loading: fail fast
            self.model = LlamaModel.from_pretrained(cfg.model, device=device, dtype=dtype,
                                                    load_format=cfg.load_format)
            self.model.decode_kernel = decode_kernel
            if self.tokenizer is None and cfg.load_format != "dummy":
                from common.loader import load_tokenizer

                self.tokenizer = load_tokenizer(cfg.model)
            # a model passed in stays as it was given; one the engine loads is the engine's to optimize
            if cfg.cpu_prepack and can_prepack(self.model.dtype, self.model.device) is None:
                prepack_linears(self.model, batch_hint=cfg.max_num_seqs)
        # counted on the model, so an engine rebuilt around already-packed weights (ch08's restart) says so
        self.prepacked_linears = sum(isinstance(m, PackedLinear) for m in self.model.modules())
        self.decode_kernel_name = decode_kernel_name(getattr(self.model, "decode_kernel", None))
        mcfg = self.model.config
        per_block = int(mcfg.kv_bytes_per_token(self.model.dtype.itemsize)) * cfg.block_size
        num_blocks = cfg.num_blocks or max(cfg.kv_cache_mib * 2**20 // per_block, 1)
        self.scheduler = Scheduler(cfg.scheduler_config(num_blocks), self.policy or make_policy(cfg.policy))
        self.runner = ModelRunner(self.model, num_blocks, cfg.block_size, seed=cfg.seed)
        self.step_log: list[StepRecord] = []
        self._next_id = 0
        self._detok: dict[int, _Detok] = {}
        self._seqs: dict[int, Sequence] = {}
        self._groups: dict[int, tuple[SequenceGroup, GroupOutputs]] = {}  # n > 1 requests by request id
        self._group_of: dict[int, int] = {}                                 # member seq id -> request id
        self._next_child_id = -1                                            # children count down: never a request id
        self.clock = time.perf_counter
        self.structured: StructuredOutputs | None = None   # made with the first constrained request
        self.num_structured_requests = 0

    # ------------------------------------------------------------------ the public surface a server reads
    @property
    def max_model_len(self) -> int:
        """The longest prompt + output one request can have here: the context, or the whole cache if smaller."""
        sched = self.scheduler.config
        return min(sched.max_model_len, sched.capacity_tokens)

    def max_choices(self, prompt_len: int, max_tokens: int) -> int:
        """The largest ``n`` a request of this shape can have (``Scheduler.max_choices``)."""
        return self.scheduler.max_choices(prompt_len, max_tokens)

    def stats(self) -> EngineStats:
        s, bm = self.scheduler, self.scheduler.block_manager
        bs = self.config.block_size
        return EngineStats(len(s.running), len(s.waiting), s.kv_usage, bm.num_used_blocks, bm.num_blocks,
                           s.num_preemptions, bm.prefix_queries * bs, bm.prefix_hits * bs,
                           self.num_structured_requests)

    # ------------------------------------------------------------------ requests
    def encode(self, prompt: str | Seq[int]) -> list[int]:
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise UsageError("this engine has no tokenizer; pass token ids instead of text")
            return self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        return [int(t) for t in prompt]

    def add_request(self, prompt: str | Seq[int], params: SamplingParams | None = None, *,
                    request_id: int | None = None, arrival_time: float | None = None, priority: int = 0,
                    tenant: str = "default", predicted_output_len: int | None = None) -> int:
        rid = self._next_id if request_id is None else request_id
        self._next_id = max(self._next_id, rid + 1)
        params = params or SamplingParams()
        if params.structured_outputs is not None:
            self._structured_outputs().prepare(params.structured_outputs)   # compile now: fail here, not mid-step
        kw = dict(arrival_time=self.clock() if arrival_time is None else arrival_time, priority=priority,
                  tenant=tenant, predicted_output_len=predicted_output_len)
        if params.n > 1:
            rid = self._add_group(rid, self.encode(prompt), params, kw)
        else:
            rid = self.add_sequence(Sequence(rid, self.encode(prompt), params, **kw))
        self.num_structured_requests += params.structured_outputs is not None
        return rid

    def _structured_outputs(self) -> StructuredOutputs:
        """The engine's grammar state (xgrammar is imported only once a request needs it)."""
        if self.structured is None:
            if self.tokenizer is None:
                raise UsageError("structured outputs need the engine's tokenizer to compile a grammar")
            from ch04_kvcache.grammar import grammar_cache
            from ch05_scheduling.structured import StructuredOutputs

            mcfg = self.model.config
            self.structured = StructuredOutputs(grammar_cache(self.tokenizer, mcfg.vocab_size, mcfg.eos_token_ids))
            self.runner.structured = self.structured
        return self.structured

    def _add_group(self, rid: int, prompt_ids: list[int], params: SamplingParams, kw: dict) -> int:
        if rid in self._seqs or rid in self._groups:
            raise UsageError(f"request id {rid} is already in the engine")
        child_ids = list(range(self._next_child_id, self._next_child_id - params.n + 1, -1))
        group = make_group(rid, prompt_ids, params, child_ids, **kw)
        for m in group.seqs:
            m.eos_token_ids = tuple(self.model.config.eos_token_ids)
        self.scheduler.add_group(group)
        self._next_child_id -= params.n - 1
        self._groups[rid] = (group, GroupOutputs(group.n))
        for m in group.seqs:
            self._seqs[m.seq_id] = m
            self._detok[m.seq_id] = _Detok()
            self._group_of[m.seq_id] = rid
        return rid

    def add_sequence(self, seq: Sequence) -> int:
        """Add a prebuilt request (trace replays keep the object to read its timings afterwards)."""
        if seq.seq_id in self._seqs:
            raise UsageError(f"request id {seq.seq_id} is already in the engine")
        seq.eos_token_ids = tuple(self.model.config.eos_token_ids)
        self._next_id = max(self._next_id, seq.seq_id + 1)
        self.scheduler.add(seq)
        self._seqs[seq.seq_id] = seq
        self._detok[seq.seq_id] = _Detok()
        return seq.seq_id

    def abort(self, request_id: int) -> RequestOutput | None:
        seq = self.scheduler.abort(request_id, self.clock())
        if seq is None:
            return None
        if request_id in self._groups:
            members = self._groups[request_id][0].seqs
            for m in members:
                self.runner.release(m.seq_id)
            return self._group_output(request_id, [self._output(m) for m in members if m.seq_id in self._seqs])
        self.runner.release(request_id)
        return self._output(seq)

    def has_unfinished(self) -> bool:
        return self.scheduler.has_unfinished

    # ------------------------------------------------------------------ the loop
    def step(self) -> list[RequestOutput]:
        """One iteration; returns the requests that produced a token (or finished) in it."""
        t0 = self.clock()
        out = self.scheduler.schedule(t0)
        if out.is_empty:
            return []
        res = self.runner.execute(out)
        if self.model.device.type == "cuda":
            torch.cuda.synchronize()
        now = self.clock()
        self.scheduler.update(out, res.sampled, now, res.logprobs)
        for sid in res.grammar_done:              # the grammar is complete (normally on EOS, already finished)
            self.scheduler.finish(sid, FinishReason.STOP, now)
        results = []
        groups: dict[int, list[RequestOutput]] = {}
        for s in out.scheduled:
            if s.sample:
                for sid in (s.seq_id, *s.fork_ids):
                    o = self._postprocess(sid, now)
                    if sid in self._group_of:
                        groups.setdefault(self._group_of[sid], []).append(o)
                    else:
                        results.append(o)
        results += [self._group_output(rid, outs) for rid, outs in groups.items()]
        # the whole iteration (schedule + forward + sampling + postprocess): what the simulator must predict
        self.step_log.append(StepRecord(step_features(out), self.clock() - t0))
        return results

    def _postprocess(self, rid: int, now: float) -> RequestOutput:
        seq = self._seqs[rid]
        if self.tokenizer is not None and seq.params.stop:
            text = self.tokenizer.decode(seq.output_token_ids, skip_special_tokens=True)
            for stop in seq.params.stop:
                at = text.find(stop)
                if at >= 0:
                    seq.output_text = text[:at + len(stop) if seq.params.include_stop_str_in_output else at]
                    self._detok[rid].stopped = True
                    if not seq.is_finished:
                        self.scheduler.finish(rid, FinishReason.STOP, now)
                    break
        if seq.is_finished:
            self.runner.release(rid)
        return self._output(seq)

    def _output(self, seq: Sequence) -> RequestOutput:
        d = self._detok.setdefault(seq.seq_id, _Detok())
        text = seq.output_text
        if self.tokenizer is not None and not d.stopped:
            text = self.tokenizer.decode(seq.output_token_ids, skip_special_tokens=True)
            if not seq.is_finished and text.endswith("\ufffd"):
                text = d.emitted_text          # an incomplete UTF-8 character: wait for the next token
            seq.output_text = text
        new_ids = seq.output_token_ids[d.emitted_tokens:]
        lps = new_lps = None
        if seq.params.logprobs is not None:
            lps, new_lps = list(seq.output_logprobs), seq.output_logprobs[d.emitted_tokens:]
        new_text = text[len(d.emitted_text):] if text.startswith(d.emitted_text) else text
        d.emitted_tokens, d.emitted_text = seq.num_output_tokens, text
        if seq.is_finished:
            self._detok.pop(seq.seq_id, None)
            self._seqs.pop(seq.seq_id, None)
        return RequestOutput(seq.seq_id, list(seq.prompt_token_ids), list(seq.output_token_ids), text, new_ids,
                             new_text, seq.is_finished, seq.finish_reason.value if seq.finish_reason else None,
                             seq.num_cached_tokens, seq.num_preemptions, seq.arrival_time, seq.first_token_time,
                             seq.finish_time, lps, new_lps)

    def _group_output(self, rid: int, member_outputs: list[RequestOutput]) -> RequestOutput:
        """One output for an n > 1 request: its choices' latest state, new tokens for those that stepped."""
        group, latest = self._groups[rid]
        stepped = set()
        for o in member_outputs:
            i = group.index_of(o.request_id)
            latest.update(i, o)
            stepped.add(i)
        choices = latest.snapshot(stepped)
        first, p = choices[0], group.parent
        done = all(c.finished for c in choices)
        if done:
            del self._groups[rid]
            for m in group.seqs:
                self._group_of.pop(m.seq_id, None)
        return RequestOutput(rid, list(p.prompt_token_ids), first.token_ids, first.text, first.new_token_ids,
                             first.new_text, done, first.finish_reason, p.num_cached_tokens,
                             sum(m.num_preemptions for m in group.seqs), p.arrival_time,
                             min((m.first_token_time for m in group.seqs if m.first_token_time is not None),
                                 default=None),
                             max((m.finish_time for m in group.seqs if m.finish_time is not None), default=None)
                             if done else None, first.logprobs, first.new_logprobs, choices)

    # ------------------------------------------------------------------ offline API
    def generate(self, prompts: Seq[str | Seq[int]], params: SamplingParams | Seq[SamplingParams] | None = None,
                 ) -> list[RequestOutput]:
        """Run all prompts to completion with continuous batching; outputs in prompt order."""
        if params is None or isinstance(params, SamplingParams):
            params = [params or SamplingParams()] * len(prompts)
        if len(params) != len(prompts):
            raise UsageError(f"{len(prompts)} prompts but {len(params)} sampling parameter sets")
        ids = [self.add_request(p, sp) for p, sp in zip(prompts, params, strict=True)]
        final: dict[int, RequestOutput] = {}
        while self.has_unfinished():
            for o in self.step():
                if o.finished:
                    final[o.request_id] = o
        return [final[i] for i in ids]


def main(argv: list[str] | None = None) -> int:
    from common.chat import DEMO_PROMPTS, chat_ids
    from common.cli import add_common_args, friendly_errors, make_parser

    parser = make_parser("python -m ch05_scheduling.engine", __doc__)
    add_common_args(parser)
    parser.add_argument("--max-tokens", type=int, default=32, help="tokens to generate per prompt")
    parser.add_argument("--policy", default="continuous", help="scheduling policy (see ch05_scheduling.policies)")
    args = parser.parse_args(argv)
    with friendly_errors():
        engine = LLMEngine(EngineConfig(model=args.model, device=args.device, dtype=args.dtype,
                                        load_format=args.load_format, policy=args.policy, seed=args.seed))
        prompts = list(DEMO_PROMPTS) + ([] if args.smoke else ["Write a haiku about the sea."])
        t0 = time.perf_counter()
        outs = engine.generate([chat_ids(engine.tokenizer, p) for p in prompts],
                               SamplingParams(max_tokens=8 if args.smoke else args.max_tokens))
        wall = time.perf_counter() - t0
        for p, o in zip(prompts, outs, strict=True):
            print(f"> {p}\n  {o.text!r} ({o.finish_reason})")
        n = sum(len(o.token_ids) for o in outs)
        print(f"{n} tokens in {wall:.2f} s ({n / wall:.1f} tok/s) over {len(engine.step_log)} steps")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
