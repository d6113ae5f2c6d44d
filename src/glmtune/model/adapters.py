"""Attach PEFT adapters to a loaded base model."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from glmtune.errors import ConfigError, ModelNotFoundError
from glmtune.hparams.model_args import ModelArguments
from glmtune.hparams.validation import split_names
from glmtune.model.prefix_generation import with_prefix_generation


def base_model(model: Any) -> Any:
    """The transformers model under a PEFT wrapper (the model itself when there is none)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


@contextmanager
def adapter_swapped_in(model: Any, name: str) -> Iterator[None]:
    """Run a PeftModel with another of its adapters (frozen); its trained "default" adapter is active and trainable
    again afterwards. How a second model that differs from the policy only by an adapter shares its base."""
    model.set_adapter(name, inference_mode=True)
    try:
        yield
    finally:
        model.set_adapter("default")


def check_adapter_dir(path: str) -> Path:
    directory = Path(path).expanduser()
    if not (directory / "adapter_config.json").is_file():
        raise ModelNotFoundError(
            f"adapter {directory}: no adapter_config.json there; give the output_dir of a lora or p_tuning run"
        )
    return directory


def peft_task_type(model: Any) -> str:
    """PEFT's task for a model's head: a scoring head (reward model) is saved with the adapter, a causal LM generates."""
    return "SEQ_CLS" if type(base_model(model)).__name__.endswith("ForSequenceClassification") else "CAUSAL_LM"


def load_adapter(model: Any, path: str, is_trainable: bool = False) -> Any:
    """The adapter at `path` on `model`.

    An adapter trained for another head (an sft adapter, on a reward model's body) loads as a
    plain PEFT model, without that head, so it can be merged; it cannot continue training there.
    """
    from peft import PeftConfig, PeftModel

    directory = str(check_adapter_dir(path))
    config = PeftConfig.from_pretrained(directory)
    if config.task_type is not None and config.task_type != peft_task_type(model):
        if is_trainable:
            raise ConfigError(
                f"adapter {directory} was trained for a {config.task_type} head, this stage trains a "
                f"{peft_task_type(model)} one: start a new adapter on top of it with --create_new_adapter true "
                "(ChatGLM Efficient Tuning: --resume_lora_training False)"
            )
        config.task_type = None
    return with_prefix_generation(PeftModel.from_pretrained(model, directory, config=config, is_trainable=is_trainable))


def attach_inference_adapters(model, model_args: ModelArguments):
    """Apply each adapter in order; mergeable ones (LoRA) are folded into the weights for fast decoding.

    Prefix-tuning adapters cannot be merged, so the last such adapter stays wrapped in PeftModel.
    """
    adapters = split_names(model_args.adapter_name_or_path)
    if not adapters:
        return model
    for adapter in adapters:
        model = load_adapter(model, adapter)
        if model.peft_config["default"].is_prompt_learning:
            if adapter != adapters[-1]:
                raise ModelNotFoundError(f"adapter {adapter} is a p_tuning prefix: it can only be the last adapter")
            return model
        model = model.merge_and_unload()
    return model
