"""The server's configuration, validated once; the CLI's defaults come from here (book 8.1.2, 8.3.3).

Every knob a production deployment turns is a field: backend and model, security (8.8), reliability
(8.9) and observability (8.4). Kubernetes passes them as flags or ``LLMIC_*`` environment variables.
The engine backend's own knobs are not repeated here: ``engine`` holds ch05's :class:`EngineConfig`, and
the server's ``--max-num-seqs`` ... flags are generated from its fields (``server.build_parser``), so an
engine setting added in ch05 is a server flag without an edit in this chapter. Neither module imports
torch: ``--help`` and a bad flag answer at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ch05_scheduling.config import EngineConfig

BACKENDS = ("engine", "transformers", "vllm")
FAILURE_POLICIES = ("restart", "exit")
FALLBACK_POLICIES = ("never", "unhealthy", "unhealthy+saturated")
QUANTIZATIONS = ("int8", "int4")  # ch06_quantization.engine_quant.QUANTIZATIONS (not imported: no torch here)


@dataclass(slots=True)
class ServerConfig:
    # serving
    host: str = "127.0.0.1"
    port: int = 8000
    backend: str = "engine"
    model: str = "smollm2-135m"
    served_model_name: str | None = None  # what clients send as "model"; default: the model spec
    max_model_len: int | None = None  # default: the model's context
    default_max_tokens: int = 256  # chat requests that send no max_tokens
    vllm_url: str = "http://127.0.0.1:8001"
    # the engine backend's knobs (ch05; the 8.5 tuning walk-through turns these); model and context come
    # from the fields above
    engine: EngineConfig = field(default_factory=EngineConfig)
    quantization: str | None = None  # engine: RTN int8/int4 at load on ch06's packed kernels (checkpoints: auto)
    # security (8.8)
    api_key_file: str | None = None
    requests_per_minute: float = 0.0  # per key; 0 = unlimited
    tokens_per_minute: float = 0.0  # per key (prompt + max_tokens); 0 = unlimited
    content_filter: bool = True
    blocklist_file: str | None = None
    log_prompts: bool = False  # privacy by default; when on, prompts/outputs are redacted
    # reliability (8.9)
    max_pending: int = 64  # requests in the server (running + waiting) before 503
    request_timeout_s: float = 300.0
    retry_after_s: int = 2
    on_failure: str = "restart"
    max_restarts: int = 2
    fallback_backend: str | None = None
    fallback_policy: str = "unhealthy"
    shutdown_grace_s: float = 30.0
    # observability (8.4, 8.7)
    cost_per_hour: float = 0.0
    log_level: str = "info"
    json_logs: bool = True
    max_body_bytes: int = 2_000_000

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.fallback_backend is not None and self.fallback_backend not in BACKENDS:
            raise ValueError(f"fallback backend must be one of {', '.join(BACKENDS)}")
        if self.on_failure not in FAILURE_POLICIES:
            raise ValueError(f"on_failure must be one of {', '.join(FAILURE_POLICIES)}")
        if self.quantization is not None and self.quantization not in QUANTIZATIONS:
            raise ValueError(f"quantization must be one of {', '.join(QUANTIZATIONS)}, got {self.quantization!r}")
        if self.fallback_policy not in FALLBACK_POLICIES:
            raise ValueError(f"fallback policy must be one of {', '.join(FALLBACK_POLICIES)}")
        for name in ("max_pending", "default_max_tokens", "retry_after_s", "max_body_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("requests_per_minute", "tokens_per_minute", "cost_per_hour", "max_restarts"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.request_timeout_s <= 0 or self.shutdown_grace_s < 0:
            raise ValueError("request_timeout_s must be > 0 and shutdown_grace_s >= 0")
        if not 0 < self.port < 65536:
            raise ValueError("port must be within 1..65535")

    @property
    def model_name(self) -> str:
        return self.served_model_name or self.model

    def fingerprint(self, backend: str | None = None) -> str:
        """``system_fingerprint`` of every response, as vLLM builds its own (``vllm-<version>-<hash8>``): this
        project's version, the backend, and 8 hex digits of everything that decides what the model answers
        (model, backend, engine knobs, quantization), so a client can tell when a deployment changed."""
        import hashlib
        from importlib.metadata import PackageNotFoundError, version

        try:
            ours = version("llm-inference-companion")
        except PackageNotFoundError:
            ours = "dev"
        backend = backend or self.backend   # the fallback backend answers with its own
        decides = repr((self.model, self.served_model_name, backend, self.max_model_len, self.vllm_url,
                        self.engine, self.quantization))
        return f"llmic-{ours}-{backend}-{hashlib.sha256(decides.encode()).hexdigest()[:8]}"
