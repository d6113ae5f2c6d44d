"""`glmtune convert SRC DST`: a ChatGLM2/3, GLM-4 or Baichuan(2)-7B folder as a native folder, or a GLM back with --to chatglm."""

import argparse
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from glmtune.errors import ConfigError, ModelNotFoundError
from glmtune.paths import mark_complete


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glmtune convert",
        description="Convert a ChatGLM2/3 or GLM-4 checkpoint (original layout, remote code) into transformers' native "
        "GlmForCausalLM, a Baichuan-7B or Baichuan2-7B one into LlamaForCausalLM, or a native GLM back (--to chatglm). "
        "Every tensor is accounted for; nothing is guessed.",
    )
    parser.add_argument("source", help="model folder to read")
    parser.add_argument("target", help="folder to write (must not exist, or be empty, unless --overwrite)")
    parser.add_argument("--to", choices=("native", "chatglm"), default="native", help="layout to write (default: native; chatglm takes a native GLM folder back to the original layout)")
    parser.add_argument("--shard_size", type=float, default=2.0, help="largest safetensors shard, in GB (default: 2)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing target folder")
    return parser


def convert(source: Path, target: Path, to: str, shard_bytes: int, overwrite: bool = False) -> Path:
    """Convert into a temporary sibling folder renamed into place, so a cut-off run leaves no half-written target."""
    from glmtune.convert.cache import CONVERTERS
    from glmtune.convert.chatglm import export_chatglm
    from glmtune.convert.layout import folder_layout

    if not (source / "config.json").is_file():
        raise ModelNotFoundError(f"{source} has no config.json: not a model folder")
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise ConfigError(f"{target} exists and is not empty: choose another target or pass --overwrite")
    layout = folder_layout(source)
    if to == "native" and layout not in CONVERTERS:
        raise ConfigError(f"{source} is not in the ChatGLM or Baichuan layout (model_type chatglm or baichuan): nothing to convert")
    if to == "chatglm" and layout is not None:
        raise ConfigError(f"{source} is already in the {layout} layout")
    target.parent.mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        if to == "native":
            CONVERTERS[layout](source, work_dir, shard_bytes)
            mark_complete(work_dir, f"converted from {source}")
        else:
            export_chatglm(source, work_dir, max_shard_bytes=shard_bytes)
        work_dir.chmod(0o755)
        if target.exists():
            shutil.rmtree(target)
        work_dir.rename(target)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return target


def main(argv: Sequence[str]) -> int:
    options = build_parser().parse_args(list(argv))
    if options.shard_size <= 0:
        raise ConfigError(f"--shard_size {options.shard_size}: must be > 0 (GB per shard)")
    target = convert(
        Path(options.source).expanduser(), Path(options.target).expanduser(), options.to, int(options.shard_size * 10**9), options.overwrite
    )
    print(target)
    return 0
