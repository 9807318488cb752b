"""The OpenAI-compatible server (book 8.1, 8.4, 8.8, 8.9): ``python -m ch08_production.server``.

Examples::

    python -m ch08_production.server                              # ch05 engine, embedded model, :8000
    python -m ch08_production.server --backend transformers --port 8080
    python -m ch08_production.server --backend vllm --vllm-url http://127.0.0.1:8001
    LLMIC_API_KEYS=sk-local-123456 python -m ch08_production.server --requests-per-minute 60
    python -m ch08_production.server --api-key-file /var/run/secrets/llm/keys --cost-per-hour 2.5

Then ``curl -H 'Authorization: Bearer sk-local-123456' localhost:8000/v1/models`` or point the
``openai`` client at ``http://localhost:8000/v1``. Flags can also come from ``LLMIC_<FLAG>``
environment variables (e.g. ``LLMIC_PORT=9000``), the way a Kubernetes ConfigMap sets them.
The process exits non-zero when the backend fails and cannot be restarted.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence

from ch05_scheduling.config import EngineConfig, served_fields
from ch08_production.config import BACKENDS, FAILURE_POLICIES, FALLBACK_POLICIES, QUANTIZATIONS, ServerConfig

_HELP = {
    "host": "interface to bind (keep 127.0.0.1 unless a proxy or pod network needs more)",
    "port": "TCP port",
    "backend": "what generates tokens: engine (ch05), transformers, or vllm (proxy)",
    "model": "model spec (preset, HF folder or hub id); for --backend vllm, the model vLLM serves",
    "served_model_name": "the model id clients send (default: --model)",
    "max_model_len": "context length to enforce (default: the model's)",
    "default_max_tokens": "max_tokens for chat requests that send none",
    "vllm_url": "base URL of the vLLM server for --backend vllm",
    "quantization": "engine: RTN-quantize the fp32 weights at load (int8 per channel, int4 group 64) and run them "
                    "on ch06's packed C++ kernels; a GPTQ/AWQ/compressed-tensors checkpoint is detected from its "
                    "config.json and needs no flag",
    "api_key_file": "mounted secret with one API key per line (also $LLMIC_API_KEYS, comma-separated)",
    "requests_per_minute": "per-key request limit (token bucket); 0 = off",
    "tokens_per_minute": "per-key token limit, prompt + max_tokens; 0 = off",
    "content_filter": "refuse prompts/outputs matching the blocklist",
    "blocklist_file": "one regular expression per line, replacing the default blocklist",
    "log_prompts": "log prompts and outputs (redacted); off by default for privacy",
    "max_pending": "requests in flight before new ones get 503 + Retry-After",
    "request_timeout_s": "per-request deadline, seconds",
    "retry_after_s": "Retry-After sent with 503s",
    "on_failure": "backend failure: restart it (then exit 1 if that fails) or exit 1 at once",
    "max_restarts": "restart attempts before giving up",
    "fallback_backend": "second backend for degradation (same model)",
    "fallback_policy": "when to use the fallback",
    "shutdown_grace_s": "how long shutdown waits for in-flight requests",
    "cost_per_hour": "instance price in $/hour, for the cost metrics",
    "log_level": "debug, info, warning, error",
    "json_logs": "structured JSON log lines",
    "max_body_bytes": "largest request body accepted",
}
_CHOICES = {"backend": BACKENDS, "fallback_backend": BACKENDS, "on_failure": FAILURE_POLICIES,
            "quantization": QUANTIZATIONS,
            "fallback_policy": FALLBACK_POLICIES}


def _add_flag(parser: argparse.ArgumentParser, f: dataclasses.Field, default: object, help: str,  # noqa: A002
              choices: Sequence[str] | None) -> None:
    """One ``--flag`` for a dataclass field; its ``LLMIC_<NAME>`` environment variable overrides the default."""
    flag = "--" + f.name.replace("_", "-")
    env = os.environ.get("LLMIC_" + f.name.upper())
    if isinstance(default, bool):
        parser.add_argument(flag, action=argparse.BooleanOptionalAction,
                            default=env.lower() in ("1", "true", "yes") if env else default, help=help)
        return
    kind = int if "int" in str(f.type) else float if "float" in str(f.type) else str  # "int | None" -> int
    parser.add_argument(flag, type=kind, default=kind(env) if env else default, choices=choices,
                        help=help + " (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    """The server's flags: one per :class:`ServerConfig` field, then one per served :class:`EngineConfig` field."""
    from common.cli import make_parser  # imported here: --help and bad flags answer without loading torch

    parser = make_parser("python -m ch08_production.server", __doc__)
    defaults = ServerConfig(backend="transformers")
    for f in dataclasses.fields(ServerConfig):
        if f.name == "engine":
            continue
        default = getattr(defaults, f.name) if f.name != "backend" else "engine"
        _add_flag(parser, f, default, _HELP.get(f.name, ""), _CHOICES.get(f.name))
    engine, engine_defaults = parser.add_argument_group("engine backend (ch05's EngineConfig)"), EngineConfig()
    for f in served_fields(EngineConfig):
        _add_flag(engine, f, getattr(engine_defaults, f.name), "engine: " + f.metadata["help"],
                  f.metadata["choices"])
    return parser


def config_from_args(argv: Sequence[str] | None = None) -> ServerConfig:
    args = vars(build_parser().parse_args(argv))
    engine_args = {f.name: args.pop(f.name) for f in served_fields(EngineConfig)}
    try:
        return ServerConfig(**args, engine=EngineConfig(**engine_args))
    except ValueError as exc:  # UsageError too: one sentence, exit 2
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def build_state(cfg: ServerConfig):
    """Backends, keys, logger -> :class:`ServerState` (the model loads later, in the app's lifespan)."""
    from ch08_production.backends import engine_available, make_backend
    from ch08_production.observe import setup_logging
    from ch08_production.security import APIKeyStore
    from ch08_production.state import ServerState

    logger = setup_logging(cfg.log_level, cfg.json_logs)
    keys = APIKeyStore.from_sources(key_file=cfg.api_key_file)
    if not keys.enabled:
        logger.warning("no API keys configured: /v1 routes are open (set LLMIC_API_KEYS or --api-key-file)")
    kw = dict(model_name=cfg.model_name, max_model_len=cfg.max_model_len, vllm_url=cfg.vllm_url)
    if cfg.backend == "engine" and not engine_available():
        logger.warning("the ch05 engine is not importable here; serving with the transformers backend instead")
        cfg.backend = "transformers"
    eng = dict(engine_config=cfg.engine, quantization=cfg.quantization)
    backend = make_backend(cfg.backend, cfg.model, **kw, **eng)
    fallback = make_backend(cfg.fallback_backend, cfg.model, **kw, **eng) if cfg.fallback_backend else None
    return ServerState(cfg, backend, fallback=fallback, keys=keys, logger=logger)


def main(argv: Sequence[str] | None = None) -> int:
    cfg = config_from_args(argv)
    from common.cli import friendly_errors

    with friendly_errors():
        try:
            state = build_state(cfg)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        from ch08_production.app import create_app
        from ch08_production.launch import make_server

        server = make_server(create_app(state), state, cfg.host, cfg.port, log_level=cfg.log_level)
        server.run()
        if not server.started and not server.exit_code:
            print("error: the server did not start (see the log above: port in use, or the model failed to "
                  "load)", file=sys.stderr)
            return 1
        return server.exit_code


if __name__ == "__main__":
    from ch08_production.omp import reexec_with_passive_omp

    config_from_args(sys.argv[1:])  # bad flags fail fast, before the re-exec and before torch loads
    reexec_with_passive_omp("ch08_production.server")
    sys.exit(main())
