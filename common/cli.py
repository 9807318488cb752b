"""Flags every chapter script shares, defined once: ``--smoke --json --device --dtype --model --seed``.

Usage in a script::

    def main(argv=None) -> int:
        parser = make_parser("python -m ch04_kvcache.compare", __doc__)
        add_common_args(parser)
        parser.add_argument("--new-tokens", type=int, default=256, help="...")
        args = parser.parse_args(argv)
        with friendly_errors():
            ...

:func:`friendly_errors` turns the errors a reader will meet (no GPU, no model, out of memory, bad value)
into one sentence on stderr and exit code 2, instead of a traceback.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager

import torch

from common.device import DEVICE_CHOICES, DTYPE_CHOICES, DeviceError
from common.errors import UsageError  # re-exported: chapters import it from here
from common.loader import EMBEDDED, LOAD_FORMATS, ModelLoadError
from common.models import ModelPrepError


def make_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """An argparse parser whose help shows defaults and whose description is the module docstring."""
    return argparse.ArgumentParser(prog=prog, description=(doc or "").strip(),
                                   formatter_class=argparse.RawDescriptionHelpFormatter
                                   if doc and "\n\n" in doc else argparse.ArgumentDefaultsHelpFormatter)


def add_common_args(parser: argparse.ArgumentParser, *, model: bool = True, smoke: bool = True) -> None:
    """Add the shared flags. Defaults are shown in ``--help``."""
    g = parser.add_argument_group("common options")
    if smoke:
        g.add_argument("--smoke", action="store_true", help="tiny sizes so the script finishes in seconds (CI)")
    g.add_argument("--json", action="store_true", help="print only the final JSON line")
    g.add_argument("--device", default="auto", help=f"one of {', '.join(DEVICE_CHOICES)} or cuda:N (default: auto)")
    g.add_argument("--dtype", default="auto", choices=DTYPE_CHOICES,
                   help="weights/activations dtype; auto = fp32 on CPU, bf16 on GPU (default: auto)")
    g.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    if model:
        g.add_argument("--model", default=EMBEDDED,
                       help=f"preset, local HF folder or hub id (default: {EMBEDDED}, the embedded model)")
        g.add_argument("--load-format", default="auto", choices=LOAD_FORMATS,
                       help="'dummy' = random weights from the config, for GPU throughput work (default: auto)")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:  # pragma: no cover - numpy is a core dependency
        pass


@contextmanager
def friendly_errors() -> Iterator[None]:
    """Turn expected failures into one line on stderr and ``SystemExit(2)``."""
    try:
        yield
    except (DeviceError, ModelLoadError, ModelPrepError, UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except torch.OutOfMemoryError:
        print("error: out of memory; lower --batch-size or the context length, or use a smaller --dtype.",
              file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def headline_main(prog: str, doc: str | None, headline_fn, smoke_help: str, argv: list[str] | None = None) -> int:
    """The CLI every ``chNN_x/headline.py`` shares: print the chapter's sentence, then its JSON line."""
    from common.report import emit_json

    parser = make_parser(prog, doc)
    parser.add_argument("--smoke", action="store_true", help=smoke_help)
    args = parser.parse_args(argv)
    with friendly_errors():
        h = headline_fn(args.smoke)
        print(h.text)
        emit_json({"chapter": h.chapter, **h.figures})
    return 0


def figures_main(prog: str, doc: str | None, run: Callable[[bool], dict], title: str,
                 argv: list[str] | None = None, hide: Collection[str] = ("hardware",),
                 after_table: Callable[[dict], None] | None = None) -> int:
    """The CLI of a script whose ``run(smoke)`` returns flat figures: the common flags (no ``--model``), seed,
    run, a figure/value table (unless ``--json``; keys in ``hide`` left out, then ``after_table(out)``), and
    the figures as the JSON line."""
    from common.report import emit_json, print_table

    parser = make_parser(prog, doc)
    add_common_args(parser, model=False)
    args = parser.parse_args(argv)
    with friendly_errors():
        seed_everything(args.seed)
        out = run(args.smoke)
        if not args.json:
            print_table([{"figure": k, "value": v} for k, v in out.items() if k not in hide], title=title)
            if after_table is not None:
                after_table(out)
        emit_json(out)
    return 0
