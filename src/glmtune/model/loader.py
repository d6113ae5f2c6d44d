"""Load a model from a local directory, a GGUF file, an alias or a hub id, with dtype, device and quantization."""

import logging
from dataclasses import replace
from typing import Any

from glmtune.default_model import drop_gguf_quantizer
from glmtune.errors import ModelNotFoundError
from glmtune.hparams.model_args import ModelArguments
from glmtune.model_source import first_line, resolve_model_source
from glmtune.precision import default_device, resolve_precision
from glmtune.stages import CAUSAL_LM

logger = logging.getLogger(__name__)


def pick_device(requested: str = "auto") -> str:
    return default_device() if requested == "auto" else requested


def pick_dtype(requested: str, device: str, precision: str = "auto", for_training: bool = False) -> Any:
    """The weights' dtype: as requested, else from the resolved precision (glmtune.precision).

    Inference holds the weights in that precision: bf16 on a CPU that runs it fast, fp32 on one that
    does not. Training on a CPU keeps fp32 weights and computes under bf16 autocast, so full and freeze
    tuning update fp32 weights. GPUs keep bf16 (fp16 where bf16 is missing) frozen weights, MPS fp16.
    """
    import torch

    if requested != "auto":
        return getattr(torch, requested)
    if device == "mps":
        return torch.float16
    if device.startswith("cuda") and precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "cpu" and for_training:
        return torch.float32
    resolved, warning = resolve_precision(precision, device)
    if warning:
        logger.warning(warning)
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[resolved]


# What a head needs beyond the checkpoint: a reward model's sequence-classification head scores with one number.
HEAD_OPTIONS: dict[str, dict[str, Any]] = {"AutoModelForSequenceClassification": {"num_labels": 1}}


def frozen_copy_settings(model_args: ModelArguments) -> ModelArguments:
    """Settings that load a frozen copy of the starting model in the dtype training holds it in.

    A reference model must compute what the policy computed before its first step; held in the
    inference dtype (bf16 on a fast-bf16 CPU) while the policy keeps fp32 weights under autocast,
    their log-probabilities would differ from the start.
    """
    dtype = pick_dtype(model_args.dtype, pick_device(model_args.device), model_args.precision, for_training=True)
    return replace(model_args, dtype=str(dtype).removeprefix("torch."))


def load_model(model_args: ModelArguments, for_training: bool = False, head: str = CAUSAL_LM):
    """Load the base model with dtype and device chosen automatically, then any adapters for inference.

    head: the transformers auto class (a stage's Stage.head): a causal LM, or a scoring head for reward models.
    """
    import transformers

    path, extra = resolve_model_source(model_args.model_name_or_path, model_args.trust_remote_code)
    device = pick_device(model_args.device)
    options: dict[str, Any] = {
        "dtype": pick_dtype(model_args.dtype, device, model_args.precision, for_training),
        "trust_remote_code": model_args.trust_remote_code,
        "cache_dir": model_args.cache_dir,
        **HEAD_OPTIONS.get(head, {}),
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
        model = getattr(transformers, head).from_pretrained(path, **options)
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
