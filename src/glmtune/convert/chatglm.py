"""Convert a ChatGLM2/3 or GLM-4 folder to a GlmForCausalLM folder, and a GlmForCausalLM folder back.

The SentencePiece tokenizer (GLM-4: tiktoken) becomes a native fast tokenizer
(chatglm_tokenizer, glm4_tokenizer). Files that are not weights or config (the tokenizer
model, the tokenizer's and the
model's remote code) are kept in ORIGINALS_DIR of the converted folder, so an export back
to the original layout is a complete folder the original code loads.
"""

import json
import shutil
from pathlib import Path
from typing import Any

from glmtune.convert.chatglm_config import (
    LAYOUT_KEY,
    native_shapes,
    original_shapes,
    to_native_config,
    to_original_config,
)
from glmtune.convert.chatglm_tokenizer import write_chatglm_tokenizer
from glmtune.convert.chatglm_weights import (
    INV_FREQ,
    to_native_tensors,
    to_original_tensors,
)
from glmtune.convert.checkpoint_io import (
    DEFAULT_SHARD_BYTES,
    INDEX_SUFFIX,
    WEIGHT_FILES,
    TensorSource,
    write_safetensors,
)
from glmtune.convert.layout import read_config

ORIGINALS_DIR = "chatglm_original"


# A fast tokenizer transformers reads without remote code: used as is by the converted model.
NATIVE_TOKENIZER = "tokenizer.json"
NATIVE_TOKENIZER_FILES = (NATIVE_TOKENIZER, "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


def side_files(directory: Path) -> list[Path]:
    """A model folder's files other than weights, config and hidden markers: tokenizer files, remote code, docs."""
    def is_side(path: Path) -> bool:
        name = path.name
        weights = name.endswith((".safetensors", ".bin", INDEX_SUFFIX)) or name in WEIGHT_FILES
        return path.is_file() and not weights and name != "config.json" and not name.startswith(".")

    return [path for path in sorted(directory.iterdir()) if is_side(path)]


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def convert_chatglm(source: Path, target: Path, max_shard_bytes: int = DEFAULT_SHARD_BYTES) -> Path:
    """Write the GlmForCausalLM equivalent of the ChatGLM folder `source` into the (empty) folder `target`."""
    original = read_config(source)
    native = to_native_config(original)
    tensors = TensorSource(source)
    if INV_FREQ in tensors.names():
        inv_freq = tensors.get(INV_FREQ)
        native[LAYOUT_KEY]["inv_freq"] = {"dtype": str(inv_freq.dtype).removeprefix("torch."), "values": inv_freq.tolist()}
    target.mkdir(parents=True, exist_ok=True)
    write_safetensors(to_native_tensors(tensors, original_shapes(original)), target, max_shard_bytes)
    write_json(target / "config.json", native)
    keep_originals(source, target)
    return target


def keep_originals(source: Path, target: Path) -> None:
    """Copy the source's side files into ORIGINALS_DIR for a later export.

    A fast tokenizer the source already has serves as is; else its SentencePiece or tiktoken model is converted.
    """
    if not (source / NATIVE_TOKENIZER).is_file():
        write_chatglm_tokenizer(source, target)
    copy_side_files(source, target, ORIGINALS_DIR)


def copy_side_files(source: Path, target: Path, originals_dir: str) -> None:
    """Every side file into target/originals_dir (for the way back); a fast tokenizer's files also beside the weights."""
    extras = side_files(source)
    if extras:
        (target / originals_dir).mkdir(exist_ok=True)
    for path in extras:
        shutil.copy2(path, target / originals_dir / path.name)
        if (source / NATIVE_TOKENIZER).is_file() and path.name in NATIVE_TOKENIZER_FILES:
            shutil.copy2(path, target / path.name)


def export_chatglm(source: Path, target: Path, originals: Path | None = None, max_shard_bytes: int = DEFAULT_SHARD_BYTES) -> Path:
    """Write the GlmForCausalLM folder `source` in the original ChatGLM layout into `target`.

    `originals` is the converted folder the model came from, whose kept files (tokenizer model,
    remote code) complete the export; by default the source's own. A model never converted
    (a native GLM) takes its own tokenizer files along instead.
    """
    native = read_config(source)
    shapes = native_shapes(native)
    tensors = TensorSource(source)
    dtype = tensors.get("model.embed_tokens.weight").dtype
    target.mkdir(parents=True, exist_ok=True)
    write_safetensors(to_original_tensors(tensors, shapes, rotary_buffer(native, shapes.head_dim, dtype)), target, max_shard_bytes)
    original = to_original_config(native)
    original["torch_dtype"] = str(dtype).removeprefix("torch.")
    write_json(target / "config.json", original)
    kept = (originals or source) / ORIGINALS_DIR
    for path in sorted(kept.iterdir()) if kept.is_dir() else side_files(source):
        shutil.copy2(path, target / path.name)
    return target


def rotary_buffer(native: dict[str, Any], head_dim: int, dtype: Any) -> Any:
    """The inv_freq buffer the original code saves: the one read at conversion, else the original code's formula."""
    import torch

    stored = (native.get(LAYOUT_KEY) or {}).get("inv_freq")
    if stored:
        return torch.tensor(stored["values"], dtype=getattr(torch, stored["dtype"])).to(dtype)
    dim = head_dim // 2
    return 1.0 / (10000 ** (torch.arange(0, dim, 2).to(dtype=dtype) / dim))
