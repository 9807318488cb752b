"""A small draft model distilled from the target by this project (book 7.4.3).

The untrained self-draft of :mod:`ch07_speculative.drafts` (the target's first layers plus its head) is
cheap but almost never agrees with the target (acceptance of a few percent on the embedded model): the
final norm and head expect the *last* layer's features. Distillation trains a small draft to agree
(steps 1 and 2, the data, live in ``distill_data.py``; their functions import from here too):

1. **Text the target generates.** The target answers ``prompts`` training prompts greedily (half
   ShareGPT questions, half "repeat this paragraph" tasks built from ShareGPT answers, never the
   benchmark's paragraph) through ch05's continuous-batching engine: the contexts the draft will see.
2. **The target's distributions as labels.** One prefill of the target over every training sequence (the
   answers above plus ``text_tokens`` of ShareGPT text) records its top-32 next-token probabilities at
   every position; the draft minimises cross-entropy against them (soft labels, Hinton et al. 2015;
   on-policy text, as DistillSpec, Zhou et al. 2024, recommends for drafts). Soft labels carry far more
   per position than the one token the target picked, which matters when the budget is minutes of CPU.
3. **A student that starts close.** The draft copies ``layers`` of the target's decoder blocks (by default
   the first four, kept frozen, and the last one, trained with the final norm and the head: a learned
   bridge from layer-4 features to the target's output, in the spirit of the "tuned lens", Belrose et al.
   2023), and shares the target's embedding table (frozen: no extra memory). Frozen blocks need no
   backward pass, so training costs little more than the forward passes.
4. **A head over the frequent tokens only** (``draft_model.py``). The target's head spans 49,152 tokens,
   as much weight as eight decoder layers, which would make any small draft's step expensive. The draft's head keeps the
   ``vocab`` most frequent tokens of ShareGPT text and of the target's answers (the idea of FR-Spec,
   Zhao et al. 2025); every other token gets probability zero. Speculative sampling stays exact: a token
   the draft cannot propose is still produced by the target's correction step (the residual max(0, p - q)
   covers it; tests/ch07/test_distill.py checks it with a chi-square test).
5. **Cached like the embedded model.** Weights, token list, timings and the loss curve go to
   ``<cache>/drafts/<name>/``; the target's answers are cached too, so a new recipe skips generation.

What it buys on a CPU is measured, not promised: see the chapter README for the acceptance rate and
speed this recipe reaches in its ~10-minute budget, and why (data: tens of thousands of labelled tokens
here, billions for the drafts in the papers).

    python -m ch07_speculative.distill                  # train (or load) and measure the draft
    python -m ch07_speculative.distill --smoke          # tiny run (random 2-layer target), seconds
    python -m ch07_speculative.distill --retrain --minutes 5
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ch04_kvcache.model import LlamaModel
from ch07_speculative.distill_data import (  # the data half, importable from here as before
    DRAFT_FORMAT,
    Soft,
    fingerprint,
    target_corpus,
    teacher_top_k,
    text_chunks,
)
from ch07_speculative.distill_data import generate_corpus as generate_corpus
from ch07_speculative.distill_data import training_prompts as training_prompts
from ch07_speculative.draft_model import SubVocabHead, build_draft, frequent_tokens


@dataclass(frozen=True)
class DistillConfig:
    """What defines a distilled draft (changing any field trains a new one)."""

    layers: tuple[int, ...] = (0, 1, 2, 3, -1)  # target blocks copied into the draft (-1 = the last)
    frozen: int = 4             # the draft's first blocks keep the target's weights (not trained)
    vocab: int = 8192           # tokens the draft's head can propose
    prompts: int = 32           # training prompts the target answers
    max_new_tokens: int = 128   # length of each answer
    text_tokens: int = 32768    # plus this much ShareGPT text, labelled by the target's distributions
    epochs: int = 8
    batch: int = 4
    lr: float = 1e-3
    minutes: float = 10.0       # training stops after this much time even if epochs remain
    seed: int = 0


@dataclass
class TrainReport:
    """How a draft was made: sizes, timings and the loss curve (saved beside the weights)."""

    generate_s: float = 0.0     # the target's share: answering the prompts, then labelling every position
    train_s: float = 0.0
    train_tokens: int = 0       # labelled positions the draft was trained on (one epoch)
    steps: int = 0
    loss_first: float = float("nan")
    loss_last: float = float("nan")
    draft_params: int = 0       # parameters the draft owns (the shared embedding not counted)
    trained_params: int = 0     # of which trained (the rest are frozen copies of the target's blocks)
    draft_bytes: int = 0
    losses: list[float] = field(default_factory=list)


def _batches(corpus: list[tuple[list[int], list[int]]], size: int, rng: random.Random):
    order = list(range(len(corpus)))
    rng.shuffle(order)
    for s in range(0, len(order), size):
        yield [corpus[i] for i in order[s:s + size]]


def train(draft: LlamaModel, corpus: list[tuple[list[int], list[int]]], cfg: DistillConfig,
          soft: list[Soft] | None = None) -> TrainReport:
    """Fit the draft to the target: without ``soft``, cross-entropy on the target's answer tokens (the
    prompt is context only); with it, cross-entropy against the target's top-k distribution at every
    position (tokens outside the draft's head are dropped and the rest renormalised)."""
    head: SubVocabHead = draft.lm_head
    index = torch.full((head.vocab_size,), -100, dtype=torch.long)
    index[head.token_ids] = torch.arange(len(head.token_ids))  # full id -> head row (-100: not proposable)
    frozen = [p for block in draft.layers[:cfg.frozen] for p in block.parameters()]
    frozen_ids = {id(p) for p in frozen}
    params = [p for n, p in draft.named_parameters()
              if not n.startswith("embed_tokens") and id(p) not in frozen_ids]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    steps_total = cfg.epochs * math.ceil(len(corpus) / cfg.batch)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 10) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * s / steps_total))))
    rep = TrainReport(train_tokens=sum(len(p) + len(o) - 1 if soft else len(o) for p, o in corpus))
    pairs = [(c, None if soft is None else soft[i]) for i, c in enumerate(corpus)]
    rng = random.Random(cfg.seed)
    fixed = [draft.embed_tokens.weight, *frozen]  # no gradients flow into them (nor backward through them)
    was = [p.requires_grad for p in fixed]
    for p in fixed:
        p.requires_grad_(False)
    head.full = False
    draft.train()
    t0 = time.perf_counter()
    try:
        for _ in range(cfg.epochs):
            for batch in _batches(pairs, cfg.batch, rng):
                seqs = [p + o for (p, o), _ in batch]
                width = max(len(s) for s in seqs)
                ids = torch.zeros(len(seqs), width, dtype=torch.long)  # right padding never leaks (causal)
                for r, s in enumerate(seqs):
                    ids[r, :len(s)] = torch.tensor(s)
                logits = draft(ids.to(draft.device)).float()  # (B, T, N)
                if soft is None:
                    labels = torch.full_like(ids, -100)
                    for r, ((p, o), _) in enumerate(batch):
                        labels[r, len(p) - 1:len(p) + len(o) - 1] = index[torch.tensor(o)]  # t predicts t+1
                    loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten().to(logits.device))
                else:
                    loss = _soft_loss(logits, [t for _, t in batch], index)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                sched.step()
                rep.losses.append(float(loss.detach()))
                rep.steps += 1
                if time.perf_counter() - t0 > 60 * cfg.minutes:
                    break
            else:
                continue
            break
    finally:
        for p, w in zip(fixed, was, strict=True):
            p.requires_grad_(w)
        head.full = True
        draft.eval()
    rep.train_s = time.perf_counter() - t0
    rep.loss_first, rep.loss_last = rep.losses[0], rep.losses[-1]
    owned = [*frozen, *params]
    rep.trained_params = sum(p.numel() for p in params)
    rep.draft_params = sum(p.numel() for p in owned)
    rep.draft_bytes = sum(p.numel() * p.element_size() for p in owned)
    return rep


def _soft_loss(logits: torch.Tensor, targets: list[Soft], index: torch.Tensor) -> torch.Tensor:
    """Mean over positions of -sum_j p_j log q(j), p = the target's top-k restricted to the head's tokens."""
    b, t, _ = logits.shape
    k = targets[0][0].shape[-1]
    rows = torch.zeros(b, t, k, dtype=torch.long)
    probs = torch.zeros(b, t, k)
    for r, (ids, p) in enumerate(targets):
        mapped = index[ids]  # (T_r - 1, k) head rows, -100 where the draft cannot propose the token
        rows[r, :len(ids)] = mapped.clamp_min(0)
        probs[r, :len(ids)] = p.float() * (mapped >= 0)
    mass = probs.sum(-1, keepdim=True)
    probs = torch.where(mass > 0, probs / mass.clamp_min(1e-12), probs)
    logq = torch.log_softmax(logits, -1).gather(-1, rows.to(logits.device))  # (B, T, k)
    return -(probs.to(logits.device) * logq).sum() / (mass > 0).sum().clamp_min(1)


def draft_dir(target: LlamaModel, cfg: DistillConfig) -> Path:
    from common.paths import cache_dir

    return cache_dir() / "drafts" / f"distilled-{len(cfg.layers)}L-{cfg.vocab}v-{fingerprint(target, cfg)}"


def save_draft(draft: LlamaModel, folder: Path, cfg: DistillConfig, report: TrainReport) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in draft.state_dict().items() if not k.startswith("embed_tokens")}
    save_file(state, str(folder / "draft.safetensors"))
    meta = {"format": DRAFT_FORMAT, "config": dataclasses.asdict(cfg), "report": dataclasses.asdict(report)}
    (folder / "draft.json").write_text(json.dumps(meta, indent=1))


def load_draft(target: LlamaModel, folder: Path) -> tuple[LlamaModel, TrainReport]:
    from safetensors.torch import load_file

    meta = json.loads((folder / "draft.json").read_text())
    cfg = DistillConfig(**{**meta["config"], "layers": tuple(meta["config"]["layers"])})
    state = load_file(str(folder / "draft.safetensors"))
    draft = build_draft(target, cfg.layers, state["lm_head.token_ids"])
    missing, unexpected = draft.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if not k.startswith("embed_tokens")]:
        raise ValueError(f"{folder} does not match this draft's shape; delete it to retrain")
    return draft.to(target.device).eval(), TrainReport(**meta["report"])


def distilled_draft(target: LlamaModel, tokenizer, cfg: DistillConfig = DistillConfig(), retrain: bool = False,
                    save: bool = True, docs: int = 3000, log=print) -> tuple[LlamaModel, TrainReport, bool]:
    """The cached draft for (target, cfg), training it first when needed. Returns (draft, report, loaded)."""
    folder = draft_dir(target, cfg)
    if not retrain and (folder / "draft.json").exists():
        draft, report = load_draft(target, folder)
        return draft, report, True
    torch.manual_seed(cfg.seed)
    log(f"distilling a {len(cfg.layers)}-layer draft: the target answers {cfg.prompts} prompts first ...")
    corpus, gen_s = target_corpus(target, tokenizer, cfg, save=save)
    answers = sum(len(o) for _, o in corpus)
    corpus += text_chunks(tokenizer, cfg.text_tokens, seed=cfg.seed)
    t0 = time.perf_counter()
    soft = teacher_top_k(target, corpus)
    label_s = time.perf_counter() - t0
    log(f"  {answers} answer tokens ({gen_s:.0f} s to generate), {sum(len(p) + len(o) for p, o in corpus)} "
        f"tokens labelled by the target ({label_s:.0f} s); training ...")
    token_ids = frequent_tokens(tokenizer, cfg.vocab, always=list(target.config.eos_token_ids),
                                own_text=[o for _, o in corpus], docs=docs, seed=cfg.seed)
    draft = build_draft(target, cfg.layers, token_ids)
    report = train(draft, corpus, cfg, soft=soft)
    report.generate_s = gen_s + label_s
    log(f"  {report.steps} steps in {report.train_s:.0f} s, loss {report.loss_first:.2f} -> {report.loss_last:.2f}")
    if save:
        save_draft(draft, folder, cfg, report)
    return draft, report, False


def measure(target: LlamaModel, drafts: dict[str, LlamaModel], prompts: dict[str, list[int]], n: int, gamma: int
            ) -> list[dict]:
    """Per draft and prompt: acceptance, tokens per target step, identical tokens, speedup over the target."""
    from ch04_kvcache.generate import generate
    from ch07_speculative.drafts import step_cost
    from ch07_speculative.speculative import ModelDrafter, speculative_generate

    rows = []
    t_step = step_cost(target, repeats=3)
    for pname, ids in prompts.items():
        generate(target, ids, 2)
        t0 = time.perf_counter()
        ref = generate(target, ids, n, cache="contiguous").token_ids
        base = time.perf_counter() - t0
        for dname, d in drafts.items():
            res = speculative_generate(target, ModelDrafter(d), ids, n, gamma)
            rows.append({"prompt": pname, "draft": dname, "acceptance_rate": res.stats.acceptance_rate,
                         "tokens_per_target_step": res.stats.tokens_per_target_step,
                         "c": step_cost(d, repeats=3) / t_step, "speedup": base / res.wall_s,
                         "identical": res.token_ids == ref})
    return rows


def main(argv: list[str] | None = None) -> int:
    from ch07_speculative.drafts import truncated_draft
    from ch07_speculative.prompt_lookup import REWRITE_PROMPT
    from common.bench import stamp_dict
    from common.chat import FRANCE_PROMPT, chat_ids
    from common.cli import add_common_args, friendly_errors, make_parser, positive_int, seed_everything
    from common.loader import load_tokenizer
    from common.report import emit_json, print_table

    parser = make_parser("python -m ch07_speculative.distill", __doc__)
    add_common_args(parser)
    parser.add_argument("--layers", default="0,1,2,3,-1", help="target blocks copied into the draft (-1 = last)")
    parser.add_argument("--frozen", type=int, default=DistillConfig.frozen, help="leading draft blocks not trained")
    parser.add_argument("--vocab", type=positive_int, default=DistillConfig.vocab, help="tokens in the draft's head")
    parser.add_argument("--prompts", type=positive_int, default=DistillConfig.prompts, help="training prompts")
    parser.add_argument("--epochs", type=positive_int, default=DistillConfig.epochs, help="passes over the answers")
    parser.add_argument("--minutes", type=float, default=DistillConfig.minutes, help="cap on training time")
    parser.add_argument("--retrain", action="store_true", help="ignore a cached draft")
    parser.add_argument("--gamma", type=positive_int, default=4, help="draft tokens per round when measuring")
    parser.add_argument("--max-new-tokens", type=positive_int, default=64, help="tokens per measured prompt")
    args = parser.parse_args(argv)
    with friendly_errors():
        seed_everything(args.seed)
        layers = tuple(int(x) for x in args.layers.split(","))
        cfg = DistillConfig(layers=layers, frozen=args.frozen, vocab=args.vocab, prompts=args.prompts,
                            epochs=args.epochs, minutes=args.minutes, seed=args.seed)
        if args.smoke:  # a random 2-layer target and a few prompts: the mechanics, in seconds
            from ch04_kvcache.config import ModelConfig

            tok = load_tokenizer(args.model)
            mc = ModelConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4,
                             num_kv_heads=2, head_dim=16, tie_word_embeddings=True, eos_token_id=2)
            torch.manual_seed(args.seed)
            target = LlamaModel(mc).eval()
            cfg = dataclasses.replace(cfg, layers=(0,), frozen=0, vocab=512, prompts=4, max_new_tokens=8, epochs=1,
                                      text_tokens=512)
            args.max_new_tokens = 8
        else:
            target = LlamaModel.from_pretrained(args.model, load_format=args.load_format)
            tok = load_tokenizer(args.model)
        draft, rep, loaded = distilled_draft(target, tok, cfg, retrain=args.retrain or args.smoke,
                                             save=not args.smoke, docs=50 if args.smoke else 3000,
                                             log=(lambda *a: None) if args.json else print)
        k = len(cfg.layers)
        drafts = {"distilled": draft, f"self-draft {k}L (untrained)": truncated_draft(target, k)}
        prompts = {"rewrite (benchmark)": chat_ids(tok, REWRITE_PROMPT), "question": chat_ids(tok, FRANCE_PROMPT)}
        rows = measure(target, drafts, prompts, args.max_new_tokens, args.gamma)
        if not args.json:
            print_table(rows, title=f"greedy, gamma {args.gamma}, {args.max_new_tokens} new tokens")
            print(f"draft: {rep.draft_params / 1e6:.1f} M own parameters ({rep.draft_bytes / 2**20:.0f} MiB), "
                  f"{'loaded from cache' if loaded else 'trained now'}: generation {rep.generate_s:.0f} s + "
                  f"training {rep.train_s:.0f} s on {rep.train_tokens} answer tokens")
        emit_json({"draft_dir": str(draft_dir(target, cfg)), "loaded_from_cache": loaded,
                   "report": {k: v for k, v in dataclasses.asdict(rep).items() if k != "losses"},
                   "rows": rows, "hardware": stamp_dict(dtype="fp32", torch_threads=torch.get_num_threads())})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
