"""`glmtune export`: merge adapters into the base and write a standalone safetensors model.

The model is written into a temporary sibling directory and renamed into place, so an
interrupted export never leaves a directory that looks complete.
"""

import logging
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from glmtune.errors import ConfigError
from glmtune.hparams.export_args import ExportArguments
from glmtune.hparams.model_args import ModelArguments

logger = logging.getLogger(__name__)


def export_model(model_args: ModelArguments, export_args: ExportArguments) -> Path:
    import torch

    from glmtune.data.tokenizer import load_tokenizer
    from glmtune.model.loader import load_model

    target = Path(export_args.export_dir).expanduser()
    if target.exists() and any(target.iterdir()) and not export_args.export_overwrite:
        raise ConfigError(f"{target} exists and is not empty: choose another --out or pass --export_overwrite")
    model = load_model(model_args)
    if hasattr(model, "peft_config"):
        raise ConfigError("a p_tuning prefix cannot be merged into the weights: serve it with --adapter instead")
    if export_args.export_format == "chatglm" and model.config.model_type != "glm":
        raise ConfigError(f"--format chatglm writes GLM models (ChatGLM2/3, GLM-4 and their conversions), not {model.config.model_type}")
    if export_args.export_dtype != "auto":
        model = model.to(getattr(torch, export_args.export_dtype))
    tokenizer = load_tokenizer(model_args, padding_side="left")
    target.parent.mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        model.config._name_or_path = target.name
        model.save_pretrained(work_dir, max_shard_size=int(export_args.export_size * 10**9))
        tokenizer.save_pretrained(work_dir)
        if export_args.export_format == "chatglm":
            work_dir = in_chatglm_layout(work_dir, model_args, int(export_args.export_size * 10**9))
        if target.exists():
            shutil.rmtree(target)
        work_dir.chmod(0o755)
        work_dir.rename(target)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    logger.info("exported a merged model to %s", target)
    return target


def in_chatglm_layout(native_dir: Path, model_args: ModelArguments, shard_bytes: int) -> Path:
    """Rewrite a saved merged model in the original ChatGLM layout, in a sibling folder that replaces it.

    The files kept when the base model was converted (SentencePiece model, remote code) go along.
    """
    from glmtune.convert.chatglm import export_chatglm
    from glmtune.model_source import resolve_model_source

    base_dir = Path(resolve_model_source(model_args.model_name_or_path, model_args.trust_remote_code)[0])
    chatglm_dir = Path(tempfile.mkdtemp(prefix=native_dir.name, dir=native_dir.parent))
    try:
        export_chatglm(native_dir, chatglm_dir, originals=base_dir, max_shard_bytes=shard_bytes)
    except BaseException:
        shutil.rmtree(chatglm_dir, ignore_errors=True)
        raise
    shutil.rmtree(native_dir)
    return chatglm_dir


def main(argv: Sequence[str]) -> int:
    from glmtune.hparams.entry import get_export_args

    model_args, _, export_args = get_export_args(argv)
    print(export_model(model_args, export_args))
    return 0
