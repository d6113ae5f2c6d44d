"""Which checkpoint layout a model folder holds, decided from its config.json alone."""

import json
from pathlib import Path
from typing import Any

from glmtune.errors import GlmtuneError

CHATGLM = "chatglm"
BAICHUAN = "baichuan"
REMOTE_CODE_HINT = "load it with --trust_remote_code true instead (its own modeling code runs then)"
ALIBI_REFUSAL = (
    "this Baichuan checkpoint (13B) adds ALiBi biases to attention instead of rotary positions, "
    f"which no native transformers class computes: it cannot be converted; {REMOTE_CODE_HINT}"
)


class UnsupportedLayoutError(GlmtuneError):
    """A checkpoint whose architecture has no native transformers equivalent, or a conversion that cannot be exact."""


def read_config(directory: Path) -> dict[str, Any]:
    return json.loads((directory / "config.json").read_text(encoding="utf-8"))


def detect_layout(config: dict[str, Any]) -> str | None:
    """CHATGLM for ChatGLM2/3 and GLM-4 in the original layout, BAICHUAN for Baichuan(2)-7B, None for a native model.

    ChatGLM-6B (v1) shares the model_type but not the architecture: 2D position ids and a
    LayerNorm GLU block have no counterpart in transformers, so it is refused with the reason.
    So is Baichuan-13B, whose config has no rotary length (model_max_length only): it uses ALiBi.
    """
    if config.get("model_type") == "baichuan":
        if "max_position_embeddings" not in config:
            raise UnsupportedLayoutError(ALIBI_REFUSAL)
        return BAICHUAN
    if config.get("model_type") != "chatglm":
        return None
    if config.get("position_encoding_2d") or "padded_vocab_size" not in config:
        raise UnsupportedLayoutError(
            "ChatGLM-6B (v1) uses 2D position ids and a LayerNorm block that no native transformers class has: "
            f"it cannot be converted; {REMOTE_CODE_HINT}"
        )
    return CHATGLM


def folder_layout(directory: Path) -> str | None:
    """The layout of a model folder, or None where it has no config.json or a native one."""
    if not (directory / "config.json").is_file():
        return None
    return detect_layout(read_config(directory))
