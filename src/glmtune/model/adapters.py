"""Attach PEFT adapters to a loaded base model."""

from pathlib import Path
from typing import Any

from glmtune.errors import ModelNotFoundError
from glmtune.hparams.model_args import ModelArguments
from glmtune.hparams.validation import split_names


def base_model(model: Any) -> Any:
    """The transformers model under a PEFT wrapper (the model itself when there is none)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def check_adapter_dir(path: str) -> Path:
    directory = Path(path).expanduser()
    if not (directory / "adapter_config.json").is_file():
        raise ModelNotFoundError(
            f"adapter {directory}: no adapter_config.json there; give the output_dir of a lora or p_tuning run"
        )
    return directory


def attach_inference_adapters(model, model_args: ModelArguments):
    """Apply each adapter in order; mergeable ones (LoRA) are folded into the weights for fast decoding.

    Prefix-tuning adapters cannot be merged, so the last such adapter stays wrapped in PeftModel.
    """
    adapters = split_names(model_args.adapter_name_or_path)
    if not adapters:
        return model
    from peft import PeftModel

    for adapter in adapters:
        model = PeftModel.from_pretrained(model, str(check_adapter_dir(adapter)), is_trainable=False)
        if model.peft_config["default"].is_prompt_learning:
            if adapter != adapters[-1]:
                raise ModelNotFoundError(f"adapter {adapter} is a p_tuning prefix: it can only be the last adapter")
            return model
        model = model.merge_and_unload()
    return model
