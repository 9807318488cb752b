"""Security for the server (book 8.8): API keys, per-key rate limits, content filter, privacy.

* 8.8.1 API keys come from an environment variable (``LLMIC_API_KEYS``, comma-separated) or a mounted
  secret file (one key per line, ``#`` comments): only their SHA-256 digests are kept in memory, and a
  presented key is checked with :func:`hmac.compare_digest` against every stored digest, so the time
  taken says nothing about which key, or how much of one, matched.
* 8.8.3 Rate limits are token buckets per key: one for requests, one for tokens (prompt + max_tokens
  reserved on admission, the unused part refunded at the end). A refusal says how long to wait
  (``Retry-After``).
* 8.8.2 Content filtering is a :class:`ContentFilter` protocol; the default blocks a configurable list
  of regular expressions and returns a clear refusal.
* 8.8.4 Privacy: :func:`redact` masks e-mail addresses, phone and card numbers and key-like strings;
  the server logs prompts and outputs only when asked to, and then only redacted.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

API_KEYS_ENV = "LLMIC_API_KEYS"
API_KEY_FILE_ENV = "LLMIC_API_KEY_FILE"

# ------------------------------------------------------------------------------------------- API keys


def key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


@dataclass(frozen=True)
class APIKeyStore:
    """Digests of the accepted keys. Empty means authentication is off (a warning is logged)."""

    digests: tuple[bytes, ...] = ()

    @classmethod
    def from_keys(cls, keys: Iterable[str]) -> APIKeyStore:
        clean = [k.strip() for k in keys if k.strip() and not k.strip().startswith("#")]
        if any(len(k) < 8 for k in clean):
            raise ValueError("every API key must have at least 8 characters")
        return cls(tuple(key_digest(k) for k in clean))

    @classmethod
    def from_sources(cls, env: dict[str, str] | None = None, key_file: str | Path | None = None) -> APIKeyStore:
        """Keys from ``$LLMIC_API_KEYS`` and from ``key_file`` (or ``$LLMIC_API_KEY_FILE``), merged."""
        env = dict(os.environ) if env is None else env
        keys = [k for k in env.get(API_KEYS_ENV, "").split(",") if k.strip()]
        path = key_file or env.get(API_KEY_FILE_ENV)
        if path:
            p = Path(path)
            if not p.is_file():
                raise ValueError(f"API key file {p} does not exist; mount the secret there or drop the option")
            keys += p.read_text(encoding="utf-8").splitlines()
        return cls.from_keys(keys)

    @property
    def enabled(self) -> bool:
        return bool(self.digests)

    def check(self, presented: str | None) -> str | None:
        """The key's id (first 12 hex digits of its digest) if accepted, else None. Constant-time per key."""
        if not presented:
            return None
        d = key_digest(presented)
        match = False
        for stored in self.digests:  # no early exit: every digest is compared
            match |= hmac.compare_digest(d, stored)
        return d.hex()[:12] if match else None


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


# ------------------------------------------------------------------------------------------- rate limits


@dataclass
class TokenBucket:
    """``capacity`` units, refilled at ``rate`` units per second. Pure arithmetic on a supplied clock."""

    capacity: float
    rate: float
    tokens: float = -1.0
    stamp: float = 0.0

    def __post_init__(self) -> None:
        if self.capacity <= 0 or self.rate <= 0:
            raise ValueError("bucket capacity and rate must be positive")
        if self.tokens < 0:
            self.tokens = self.capacity

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def wait_time(self, amount: float, now: float) -> float:
        """Seconds until ``amount`` is available (0 = now; inf = never, it exceeds the capacity)."""
        self._refill(now)
        if amount > self.capacity:
            return math.inf
        return max(0.0, (amount - self.tokens) / self.rate)

    def take(self, amount: float, now: float) -> None:
        self._refill(now)
        self.tokens -= amount

    def give_back(self, amount: float) -> None:
        self.tokens = min(self.capacity, self.tokens + amount)


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    retry_after_s: float = 0.0
    reason: str = ""


@dataclass
class RateLimiter:
    """Per-key request and token buckets. ``requests_per_minute == 0`` (or tokens) disables that limit."""

    requests_per_minute: float = 0.0
    tokens_per_minute: float = 0.0
    burst_s: float = 60.0  # bucket capacity = one burst_s worth of the per-minute rate
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, tuple[TokenBucket | None, TokenBucket | None]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _for(self, key_id: str) -> tuple[TokenBucket | None, TokenBucket | None]:
        if key_id not in self._buckets:
            now = self.clock()
            rq = (TokenBucket(self.requests_per_minute * self.burst_s / 60, self.requests_per_minute / 60,
                              stamp=now) if self.requests_per_minute > 0 else None)
            tk = (TokenBucket(self.tokens_per_minute * self.burst_s / 60, self.tokens_per_minute / 60,
                              stamp=now) if self.tokens_per_minute > 0 else None)
            self._buckets[key_id] = (rq, tk)
        return self._buckets[key_id]

    def acquire(self, key_id: str, tokens: int) -> RateDecision:
        """Take one request and ``tokens`` tokens from this key's buckets, or say how long to wait."""
        with self._lock:
            rq, tk = self._for(key_id)
            now = self.clock()
            w_rq = rq.wait_time(1, now) if rq else 0.0
            w_tk = tk.wait_time(tokens, now) if tk else 0.0
            if w_tk == math.inf:
                return RateDecision(False, 60.0, f"this request needs {tokens} tokens (prompt + max_tokens), more "
                                                 f"than this key's limit of {self.tokens_per_minute:g} tokens per "
                                                 "minute; lower max_tokens or shorten the prompt")
            if w_rq > 0 or w_tk > 0:
                which = "requests" if w_rq >= w_tk else "tokens"
                limit = self.requests_per_minute if which == "requests" else self.tokens_per_minute
                return RateDecision(False, max(w_rq, w_tk),
                                    f"rate limit of {limit:g} {which} per minute reached for this API key; "
                                    "retry after the time in the Retry-After header")
            if rq:
                rq.take(1, now)
            if tk:
                tk.take(tokens, now)
            return RateDecision(True)

    def refund(self, key_id: str, tokens: int) -> None:
        """Give back reserved tokens that were not generated."""
        with self._lock:
            _, tk = self._buckets.get(key_id, (None, None))
            if tk and tokens > 0:
                tk.give_back(tokens)


# ------------------------------------------------------------------------------------------- content


@dataclass(frozen=True)
class SafetyVerdict:
    allowed: bool
    reason: str = ""


class ContentFilter(Protocol):
    def check(self, text: str) -> SafetyVerdict:
        """Allow or refuse a prompt or an output."""


DEFAULT_BLOCKLIST = (
    r"\bhow (do i|to) (make|build) (a )?(bomb|explosive)s?\b",
    r"\b(credit card|social security) numbers? (dump|list) for sale\b",
)


@dataclass(frozen=True)
class BlocklistFilter:
    """The simple default: refuse text matching any of a list of case-insensitive regular expressions."""

    patterns: tuple[str, ...] = DEFAULT_BLOCKLIST

    def __post_init__(self) -> None:
        object.__setattr__(self, "_compiled", [re.compile(p, re.IGNORECASE) for p in self.patterns])

    @classmethod
    def from_file(cls, path: str | Path) -> BlocklistFilter:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        return cls(tuple(ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")))

    def check(self, text: str) -> SafetyVerdict:
        for rx in self._compiled:  # type: ignore[attr-defined]
            if rx.search(text):
                return SafetyVerdict(False, "the request was refused by the content-safety policy")
        return SafetyVerdict(True)


class AllowAll:
    def check(self, text: str) -> SafetyVerdict:
        return SafetyVerdict(True)


# ------------------------------------------------------------------------------------------- privacy

_REDACTIONS = (
    (re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"), "[EMAIL]"),
    (re.compile(r"\b(?:sk|key|tok)[-_][A-Za-z0-9_-]{8,}\b"), "[KEY]"),
    (re.compile(r"\b(?:\d[ -]?){13,19}\b"), "[CARD]"),
    (re.compile(r"\+?\d[\d ()-]{7,}\d"), "[PHONE]"),
)


def redact(text: str, max_chars: int = 200) -> str:
    """Mask personal data and secrets, then truncate: what the logs may hold when prompt logging is on."""
    for rx, repl in _REDACTIONS:
        text = rx.sub(repl, text)
    return text if len(text) <= max_chars else text[:max_chars] + f"...[{len(text) - max_chars} more chars]"
