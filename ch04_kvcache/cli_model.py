"""The model chapter 4's command lines run (book 4.1-4.4 scripts): one place that turns the common flags
(``--seed``, ``--device``, ``--dtype``, ``--model``, ``--load-format``, from ``common.cli.add_common_args``)
into a loaded ``LlamaModel``.

Not a script itself: ``python -m ch04_kvcache.generate --smoke`` (or any ch04 module) uses it.
"""

from __future__ import annotations

import argparse

from ch04_kvcache.model import LlamaModel


def model_from_args(args: argparse.Namespace) -> LlamaModel:
    """Seed everything, pick the device and dtype, and load ``--model``; the dtype is ``model.dtype``."""
    from common.cli import seed_everything
    from common.device import pick_device, pick_dtype

    seed_everything(args.seed)
    device = pick_device(args.device)
    return LlamaModel.from_pretrained(args.model, device, pick_dtype(args.dtype, device), args.load_format)
