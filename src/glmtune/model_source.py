"""Where a model's files come from: a local directory, a GGUF file, the default model's alias or a hub id.

A directory in a layout that needs remote code (ChatGLM2/3, GLM-4) resolves to its native
conversion, made once under $GLMTUNE_HOME, unless the caller runs remote code.

One line of error names what was tried and how to fix it; a hub id fails within a
second where the hub cannot be reached instead of retrying for half a minute. Tokenizer
and model loading both start here, so this module sits below the data and model layers.
"""

import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from glmtune.convert.cache import native_model_dir
from glmtune.default_model import DEFAULT_MODEL_ALIAS, ensure_default_model
from glmtune.errors import ModelNotFoundError

MODEL_ALIASES = {DEFAULT_MODEL_ALIAS: ensure_default_model}


def resolve_model_source(name: str | None, remote_code: bool = False) -> tuple[str, dict[str, Any]]:
    """Turn a user's model name into a `from_pretrained` path plus extra keyword arguments.

    remote_code: the caller loads with trust_remote_code, so a ChatGLM-layout folder is used as is.
    """
    if not name or name in MODEL_ALIASES:
        return str(MODEL_ALIASES[name or DEFAULT_MODEL_ALIAS]()), {}
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelNotFoundError(f"GGUF file {path} does not exist")
        return str(path.parent), {"gguf_file": path.name}
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{path} is a directory without config.json: not a transformers model")
        return str(path if remote_code else native_model_dir(path)), {}
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelNotFoundError(f"model path {path} does not exist: give a model directory, a .gguf file or a hub id")
    check_hub_reachable(name)
    return name, {}


def check_hub_reachable(repo_id: str) -> None:
    """Fail fast on a hub id the machine cannot fetch (offline mode, or no DNS for the hub)."""
    if hub_cache_has(repo_id):
        return
    hint = (
        f"download it where a network exists (`hf download {repo_id} --local-dir DIR`) and pass DIR, "
        f"or use the embedded default model `{DEFAULT_MODEL_ALIAS}`"
    )
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        raise ModelNotFoundError(f"model {repo_id!r}: not a local path, not in the hub cache, and HF_HUB_OFFLINE is set: {hint}")
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        raise ModelNotFoundError(f"model {repo_id!r}: not a local path and {host} is unreachable: {hint}") from None


def hub_cache_has(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # an id the hub would reject is reported by transformers later
        return False


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
