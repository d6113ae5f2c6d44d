"""Load a tokenizer and a model from a local directory, a GGUF file, an alias or a hub id.

One line of error names what was tried and how to fix it; a hub id fails within a
second where the hub cannot be reached instead of retrying for half a minute.
"""

import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from glmtune.errors import ModelNotFoundError
from glmtune.hparams.model_args import ModelArguments
from glmtune.model.default_model import DEFAULT_MODEL_ALIAS, drop_gguf_quantizer, ensure_default_model

MODEL_ALIASES = {DEFAULT_MODEL_ALIAS: ensure_default_model}


def resolve_model_source(name: str | None) -> tuple[str, dict[str, Any]]:
    """Turn a user's model name into a `from_pretrained` path plus extra keyword arguments."""
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
        return str(path), {}
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


def pick_device(requested: str = "auto") -> str:
    import torch

    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(requested: str, device: str):
    """fp32 on CPU (no fast bf16 there), bf16 on GPUs that support it, else fp16."""
    import torch

    if requested != "auto":
        return getattr(torch, requested)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    return torch.float32


def load_tokenizer(model_args: ModelArguments, padding_side: str = "right"):
    from transformers import AutoTokenizer

    path, extra = resolve_model_source(model_args.model_name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            path,
            use_fast=model_args.use_fast_tokenizer,
            trust_remote_code=model_args.trust_remote_code,
            cache_dir=model_args.cache_dir,
            padding_side=padding_side,
            **extra,
        )
    except (OSError, ValueError) as error:
        raise ModelNotFoundError(f"cannot load a tokenizer from {path}: {first_line(error)}") from error
    if tokenizer.pad_token_id is None:
        # Decoder-only chat models often ship without a pad token; eos is never a loss target under padding.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(model_args: ModelArguments, for_training: bool = False):
    """Load the base model with dtype and device chosen automatically, then any adapters for inference."""
    from transformers import AutoModelForCausalLM

    path, extra = resolve_model_source(model_args.model_name_or_path)
    device = pick_device(model_args.device)
    options: dict[str, Any] = {
        "dtype": pick_dtype(model_args.dtype, device),
        "trust_remote_code": model_args.trust_remote_code,
        "cache_dir": model_args.cache_dir,
        **extra,
    }
    if "gguf_file" not in extra:
        options["use_safetensors"] = model_args.use_safetensors or None
    if model_args.attn_implementation:
        options["attn_implementation"] = model_args.attn_implementation
    if model_args.quantization_bit is not None:
        options["quantization_config"] = bitsandbytes_config(model_args, options["dtype"])
        options["device_map"] = device  # quantized weights are placed at load time and cannot be moved later
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **options)
    except OSError as error:
        raise ModelNotFoundError(f"cannot load model weights from {path}: {first_line(error)}") from error
    if "gguf_file" in extra:
        drop_gguf_quantizer(model)
    if model_args.quantization_bit is None:
        model.to(device)
    if not for_training:
        from glmtune.model.adapters import attach_inference_adapters

        model = attach_inference_adapters(model, model_args)
        model.eval()
    return model


def bitsandbytes_config(model_args: ModelArguments, compute_dtype: Any) -> Any:
    """4-bit (QLoRA, nf4 by default) or 8-bit base weights; bitsandbytes runs on CUDA and, from 0.45, on CPU."""
    import importlib.util

    from transformers import BitsAndBytesConfig

    if importlib.util.find_spec("bitsandbytes") is None:
        raise ModelNotFoundError(
            f"quantization_bit={model_args.quantization_bit} needs bitsandbytes: pip install 'glmtune[quant]'"
        )
    if model_args.quantization_bit == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=model_args.quantization_type,
        bnb_4bit_use_double_quant=model_args.double_quantization,
        bnb_4bit_compute_dtype=compute_dtype,
    )


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
