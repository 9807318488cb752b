"""The ``vllm`` backend: our server in front of a vLLM server (book 8.1, 8.2.1, 8.4.4).

Why proxy at all: the gateway features of this chapter (keys, per-key limits, content filter, privacy,
cost metrics, admission control) then apply to vLLM unchanged, and vLLM does what it does best.
We tokenize locally (same model folder, so the same tokenizer) and send token ids, so context checks
and rate limits count exactly what vLLM will see; we ask for ``return_token_ids`` to count output
tokens, and forward the W3C ``traceparent``. Every sampling field (penalties, ``min_p``, ``top_k``,
``repetition_penalty``, ``seed``) is passed through as vLLM names it; logprobs are asked for with
``return_tokens_as_token_ids`` so each ``token_id:N`` comes back as the :class:`TokenLogprob` our other
backends produce. Closing the stream closes the HTTP response, which vLLM
treats as an abort (it frees the request's KV blocks). ``stats()`` comes from vLLM's ``/metrics``.

    python -m ch08_production.server --backend vllm --vllm-url http://127.0.0.1:8001
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from ch08_production.backends.base import (
    BackendError,
    BackendStats,
    BackendUnavailable,
    GenerationRequest,
    StreamChunk,
    TokenLogprob,
)
from ch08_production.structured_request import vllm_structured_outputs


def _token_id(token: str) -> int:
    return int(token.rsplit(":", 1)[1])  # "token_id:123" (return_tokens_as_token_ids)


def parse_completion_logprobs(lp: dict[str, Any] | None, k: int) -> tuple[TokenLogprob, ...] | None:
    """vLLM's legacy completions logprobs (tokens spelled ``token_id:N``) as :class:`TokenLogprob` s.

    The top dicts hold the k best plus the sampled token; the rank is counted among them (k+1 when the
    sampled token is not among the k best).
    """
    if not lp:
        return None
    out = []
    all_tops = lp.get("top_logprobs") or []
    for i, tok in enumerate(lp.get("tokens") or ()):
        chosen = float(lp["token_logprobs"][i])
        top = (all_tops[i] if i < len(all_tops) else None) or {}
        tops = sorted(((_token_id(t), float(v)) for t, v in top.items()), key=lambda x: -x[1])[:k]
        rank = 1 + sum(v > chosen for _, v in tops)
        out.append(TokenLogprob(_token_id(tok), chosen, rank, tuple(tops)))
    return tuple(out)


def parse_prometheus_values(text: str, names: tuple[str, ...]) -> dict[str, float]:
    """Sum of each named metric's samples in a Prometheus text exposition (labels ignored)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in names:
            try:
                out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
            except ValueError:
                continue
    return out


class VLLMProxyBackend:
    name = "vllm"
    supports_structured_outputs = True
    _STATS = ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
              "vllm:num_preemptions_total")

    def __init__(self, base_url: str, model: str, model_name: str | None = None, max_model_len: int | None = None,
                 remote_model: str | None = None, timeout_s: float = 600.0) -> None:
        self.base_url = base_url.rstrip("/").removesuffix("/v1")
        self.model_spec = model
        self.model_name = model_name or model
        self.remote_model = remote_model  # the id vLLM serves; discovered from /v1/models when None
        self._max_len_override = max_model_len
        self.max_model_len = max_model_len or 2048
        self.timeout_s = timeout_s
        self.tokenizer: Any = None
        self._client: httpx.AsyncClient | None = None
        self._inflight = 0
        self._healthy = False
        self._stats = BackendStats(healthy=False)
        self._stats_at = 0.0
        self._refresh_task: asyncio.Task | None = None

    async def start(self) -> None:
        from common.loader import load_tokenizer

        self.tokenizer = await asyncio.to_thread(load_tokenizer, self.model_spec)
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(self.timeout_s, connect=10.0),
                                         limits=httpx.Limits(max_connections=256, max_keepalive_connections=64))
        try:
            r = await self._client.get(self.base_url + "/v1/models")
            r.raise_for_status()
        except httpx.HTTPError as exc:
            raise BackendUnavailable(f"no vLLM server answers at {self.base_url} ({exc}); start one with "
                                     "'python -m ch03_env.vllm_server' and pass its URL with --vllm-url") from exc
        card = r.json()["data"][0]
        self.remote_model = self.remote_model or card["id"]
        remote_len = int(card.get("max_model_len") or self.max_model_len)
        self.max_model_len = min(self._max_len_override or remote_len, remote_len)
        self._healthy = True

    async def stop(self) -> None:
        self._healthy = False
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    def stats(self) -> BackendStats:
        if self._client is not None and time.monotonic() - self._stats_at > 1.0:
            self._stats_at = time.monotonic()
            with contextlib.suppress(RuntimeError):  # refreshed in the background, at most once a second
                self._refresh_task = asyncio.get_running_loop().create_task(self._refresh_stats())
        s = self._stats
        return BackendStats(num_running=s.num_running, num_waiting=s.num_waiting, kv_cache_usage=s.kv_cache_usage,
                            num_preemptions=s.num_preemptions, healthy=self._healthy,
                            detail={"proxy_inflight": self._inflight})

    async def _refresh_stats(self) -> None:
        try:
            r = await self._client.get(self.base_url + "/metrics", timeout=5.0)  # type: ignore[union-attr]
            v = parse_prometheus_values(r.text, self._STATS)
            self._stats = BackendStats(num_running=int(v.get(self._STATS[0], 0)),
                                       num_waiting=int(v.get(self._STATS[1], 0)),
                                       kv_cache_usage=v.get(self._STATS[2], 0.0),
                                       num_preemptions=int(v.get(self._STATS[3], 0)))
        except (httpx.HTTPError, AttributeError):
            pass

    def _body(self, request: GenerationRequest) -> dict[str, Any]:
        p = request.params
        body: dict[str, Any] = {"model": self.remote_model, "prompt": list(request.prompt_token_ids),
                                "max_tokens": p.max_tokens, "temperature": p.temperature, "top_p": p.top_p,
                                "top_k": p.top_k if p.top_k > 0 else -1, "ignore_eos": p.ignore_eos,
                                "stream": True, "return_token_ids": True,
                                "stream_options": {"include_usage": True}}
        if p.seed is not None:
            body["seed"] = p.seed
        if p.n > 1:
            body["n"] = p.n  # vLLM V1 runs n child requests, seeds seed + i, prompt shared by prefix caching
        if p.min_p:
            body["min_p"] = p.min_p
        if p.presence_penalty:
            body["presence_penalty"] = p.presence_penalty
        if p.frequency_penalty:
            body["frequency_penalty"] = p.frequency_penalty
        if p.repetition_penalty != 1.0:
            body["repetition_penalty"] = p.repetition_penalty
        if p.logprobs is not None:
            body["logprobs"] = p.logprobs
            body["return_tokens_as_token_ids"] = True
        if p.structured_outputs is not None:   # vLLM compiles and applies the grammar itself
            body["structured_outputs"] = vllm_structured_outputs(p.structured_outputs)
        return body  # stop strings are applied by our pipeline, the same for every backend

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        if self._client is None or not self._healthy:
            raise BackendUnavailable("the vLLM proxy is not connected")
        headers = {"X-Request-Id": request.request_id}
        if request.traceparent:
            headers["traceparent"] = request.traceparent
        self._inflight += 1
        finished: set[int] = set()
        try:
            async with self._client.stream("POST", self.base_url + "/v1/completions", json=self._body(request),
                                           headers=headers) as resp:
                if resp.status_code != 200:
                    detail = (await resp.aread())[:300].decode(errors="replace")
                    if resp.status_code >= 500:
                        raise BackendError(f"vLLM answered {resp.status_code}: {detail}")
                    raise BackendUnavailable(f"vLLM refused the request ({resp.status_code}): {detail}")
                async for line in resp.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    obj = json.loads(data)
                    if "error" in obj:
                        raise BackendError(f"vLLM stream error: {obj['error']}")
                    for c in obj.get("choices") or []:
                        ids = tuple(c.get("token_ids") or ())
                        lps = None
                        if request.params.logprobs is not None:
                            lps = parse_completion_logprobs(c.get("logprobs"), request.params.logprobs)
                        index = int(c.get("index") or 0)
                        yield StreamChunk(ids, c.get("text") or "", c.get("finish_reason"), lps, index)
                        if c.get("finish_reason"):
                            finished.add(index)
                            if len(finished) == request.params.n:
                                return
        except httpx.HTTPError as exc:
            self._healthy = False
            raise BackendError(f"lost the connection to vLLM at {self.base_url}: {exc}") from exc
        finally:
            self._inflight -= 1
