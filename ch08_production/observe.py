"""Structured JSON logs with request ids, and W3C trace context (book 8.4.3, 8.4.4).

Every log line is one JSON object (``ts``, ``level``, ``logger``, ``msg`` plus whatever the caller
passed in ``extra={"fields": {...}}``), ready for Loki/ELK without parsing rules. Each request gets an
id (``X-Request-Id`` echoed back) and a trace context: an incoming ``traceparent`` header
(``00-<trace-id>-<parent-span>-<flags>``) is accepted, a new span id is minted for our hop, and the
result is propagated to remote backends and logged, so a trace crosses router -> server -> vLLM.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import sys
import time
from dataclasses import dataclass
from typing import Any

LOGGER_NAME = "ch08_production"
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


@dataclass(frozen=True, slots=True)
class TraceContext:
    trace_id: str  # 32 hex
    span_id: str  # 16 hex: our span
    parent_id: str | None  # the caller's span, when a traceparent came in
    flags: str = "01"

    def header(self) -> str:
        """The ``traceparent`` to send downstream: same trace, our span as the parent."""
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"


def parse_traceparent(value: str | None) -> tuple[str, str, str] | None:
    """``(trace_id, parent_span_id, flags)`` of a valid W3C traceparent, else None (all-zero ids invalid)."""
    if not value:
        return None
    m = _TRACEPARENT.match(value.strip().lower())
    if not m or m.group(1) == "ff" or set(m.group(2)) == {"0"} or set(m.group(3)) == {"0"}:
        return None
    return m.group(2), m.group(3), m.group(4)


def trace_from_header(value: str | None) -> TraceContext:
    parsed = parse_traceparent(value)
    if parsed is None:
        return TraceContext(secrets.token_hex(16), secrets.token_hex(8), None)
    trace_id, parent, flags = parsed
    return TraceContext(trace_id, secrets.token_hex(8), parent, flags)


def new_request_id(prefix: str = "cmpl") -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(out, ensure_ascii=False, default=str)


def setup_logging(level: str = "info", json_logs: bool = True, stream: Any = None) -> logging.Logger:
    """Configure the chapter's logger (called from ``main``, never at import)."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers.clear()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if json_logs else logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
    return logger


def log(logger: logging.Logger, level: int, msg: str, **fields: Any) -> None:
    logger.log(level, msg, extra={"fields": fields})
