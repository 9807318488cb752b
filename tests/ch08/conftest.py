"""Fixtures for the ch08 server tests: a tiny random model that speaks the embedded tokenizer, servers on
free loopback ports in background threads, and a fault-injecting fake backend (tests only)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import torch

from ch08_production.backends.base import (
    BackendError,
    BackendStats,
    BackendUnavailable,
    GenerationRequest,
    IncrementalDetokenizer,
    StreamChunk,
)


def _repo_conftest():
    """The repository-wide tests/conftest.py (its module name 'conftest' is shadowed by this file)."""
    import importlib.util
    import sys

    name = "_llmic_repo_conftest"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parent.parent / "conftest.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        sys.modules[name] = mod
    return sys.modules[name]


def free_port() -> int:
    return _repo_conftest().free_port()

TINY_CTX = 256


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, embedded_model_dir: Path) -> Path:
    """A seeded 2-layer random Llama with the embedded model's tokenizer (vocab 49152), context 256."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(embedded_model_dir)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=TINY_CTX,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    model = LlamaForCausalLM(cfg).eval()
    folder = tmp_path_factory.mktemp("ch08") / "tiny-chat-llama"
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


class FakeBackend:
    """Deterministic, instant backend with switches for fault injection. Tests only.

    ``fail_after``: raise after that many tokens; ``delay_s``: sleep per token; ``restart_ok``: whether
    :meth:`restart` recovers. ``active`` is the set of request ids holding "blocks" right now.
    """

    name = "fake"

    def __init__(self, tokenizer, model_name: str = "tiny", max_model_len: int = TINY_CTX,
                 delay_s: float = 0.0, fail_after: int | None = None, restart_ok: bool = True) -> None:
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.max_model_len = max_model_len
        self.delay_s = delay_s
        self.fail_after = fail_after
        self.restart_ok = restart_ok
        self.healthy = False
        self.active: set[str] = set()
        self.aborted: list[str] = []
        self.seen: list[GenerationRequest] = []
        self.restarts = 0

    async def start(self) -> None:
        self.healthy = True

    async def stop(self) -> None:
        self.healthy = False

    async def restart(self) -> None:
        self.restarts += 1
        if not self.restart_ok:
            raise RuntimeError("restart refused (fault injection)")
        self.fail_after = None
        self.healthy = True

    def stats(self) -> BackendStats:
        return BackendStats(num_running=len(self.active), healthy=self.healthy,
                            num_used_blocks=len(self.active), num_total_blocks=64,
                            kv_cache_usage=len(self.active) / 64)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        if not self.healthy:
            raise BackendUnavailable("fake backend is down")
        self.seen.append(request)
        self.active.add(request.request_id)
        detok = IncrementalDetokenizer(self.tokenizer)
        words = self.tokenizer(" hello world", add_special_tokens=False)["input_ids"]
        done = False
        try:
            for i in range(request.params.max_tokens):
                if self.fail_after is not None and i >= self.fail_after:
                    self.healthy = False
                    raise BackendError("injected engine failure")
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                tok = words[i % len(words)]
                last = i == request.params.max_tokens - 1
                done = last  # the consumer may close the stream right after the final chunk
                yield StreamChunk((tok,), detok.push([tok]), "length" if last else None)
        finally:
            self.active.discard(request.request_id)
            if not done:
                self.aborted.append(request.request_id)


@pytest.fixture
def fake_backend_cls() -> type[FakeBackend]:
    return FakeBackend


@pytest.fixture
def serve() -> Iterator[Callable]:
    """``serve(backend, **config_overrides) -> BackgroundServer`` (stopped at teardown)."""
    from ch08_production.app import create_app
    from ch08_production.config import ServerConfig
    from ch08_production.security import APIKeyStore
    from ch08_production.state import ServerState

    started = []

    def _serve(backend, *, keys: list[str] | None = None, fallback=None, **overrides):
        from ch08_production.launch import BackgroundServer

        cfg = ServerConfig(port=free_port(), served_model_name=backend.model_name, backend="transformers",
                           log_level="warning", **overrides)
        state = ServerState(cfg, backend, fallback=fallback, keys=APIKeyStore.from_keys(keys or []))
        srv = BackgroundServer(create_app(state), state, cfg.port).start()
        started.append(srv)
        return srv

    yield _serve
    for srv in started:
        with contextlib.suppress(Exception):
            srv.stop(timeout_s=30)


@pytest.fixture(scope="session")
def tiny_hf_server(tiny_model_dir: Path):
    """One transformers-backed server on the tiny model for the whole session (keys: two test keys)."""
    from ch08_production.app import create_app
    from ch08_production.backends.hf import TransformersBackend
    from ch08_production.config import ServerConfig
    from ch08_production.launch import BackgroundServer
    from ch08_production.security import APIKeyStore
    from ch08_production.state import ServerState

    backend = TransformersBackend(str(tiny_model_dir), "tiny")
    cfg = ServerConfig(port=free_port(), backend="transformers", served_model_name="tiny", log_level="warning")
    state = ServerState(cfg, backend, keys=APIKeyStore.from_keys(["sk-test-alpha-0001", "sk-test-beta-0002"]))
    srv = BackgroundServer(create_app(state), state, cfg.port).start()
    yield srv
    srv.stop(timeout_s=30)


API_KEY = "sk-test-alpha-0001"
OTHER_KEY = "sk-test-beta-0002"


@pytest.fixture(scope="session")
def api_key() -> str:
    return API_KEY


@pytest.fixture(scope="session")
def tiny_engine_server(tiny_model_dir: Path):
    """A server on ch05's engine with the tiny model (no keys), or a skip when ch05's engine is missing."""
    pytest.importorskip("ch05_scheduling.engine", reason="ch05's engine is not available")
    from ch08_production.app import create_app
    from ch08_production.backends.engine import EngineBackend
    from ch08_production.config import ServerConfig
    from ch08_production.launch import BackgroundServer
    from ch08_production.state import ServerState

    backend = EngineBackend(str(tiny_model_dir), "tiny", max_num_seqs=8, kv_cache_mib=4)
    cfg = ServerConfig(port=free_port(), backend="engine", served_model_name="tiny", log_level="warning",
                       max_restarts=3)
    state = ServerState(cfg, backend)
    srv = BackgroundServer(create_app(state), state, cfg.port).start()
    yield srv
    srv.stop(timeout_s=30)


@pytest.fixture(scope="session")
def embedded_engine_server(embedded_model_dir: Path):
    """A server on ch05's engine with the embedded model (the default production setup), session-wide."""
    pytest.importorskip("ch05_scheduling.engine", reason="ch05's engine is not available")
    from ch08_production.app import create_app
    from ch08_production.backends.engine import EngineBackend
    from ch08_production.config import ServerConfig
    from ch08_production.launch import BackgroundServer
    from ch08_production.state import ServerState

    backend = EngineBackend(str(embedded_model_dir), "smollm2-135m", max_num_seqs=16, max_model_len=2048)
    cfg = ServerConfig(port=free_port(), backend="engine", served_model_name="smollm2-135m", log_level="warning",
                       max_pending=64)
    state = ServerState(cfg, backend)
    srv = BackgroundServer(create_app(state), state, cfg.port).start()
    yield srv
    srv.stop(timeout_s=60)


@pytest.fixture
def port() -> int:
    """A free loopback port (tests/conftest.py's helper)."""
    return free_port()
