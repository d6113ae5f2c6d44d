"""The fine-tuning method registry: every list of methods in glmtune is derived from METHODS.

The CLI's `--finetuning_type` choices, the default learning rates, validation and the web
UI's dropdown read it; `model/finetuning.py` runs the named setup function. Records are light
(import paths, no torch), so settings parsing and `--help` stay fast.

Adding a method: write its setup function `setup_<method>(model, model_args, finetuning_args)`
(in model/finetuning.py or a module of its own) and add one `Method(...)` line below.
"""

from dataclasses import dataclass
from typing import Any

from glmtune.errors import look_up
from glmtune.lazy import load_object


@dataclass(frozen=True)
class Method:
    """One way to make a loaded model trainable.

    setup: "module:function" returning the trainable model.
    learning_rate: glmtune's default for it (a user's learning_rate wins).
    adapter: trains a PEFT adapter beside frozen base weights, so the base may be quantized
        (QLoRA) and earlier adapters can be continued.
    mergeable: several of its adapters can be merged into the base in order.
    generating_only: works on generating (causal LM) models only; prefix tuning needs the key/value cache that a
        reward model's scoring class does not keep.
    """

    name: str
    summary: str
    setup: str
    learning_rate: float
    adapter: bool = False
    mergeable: bool = False
    generating_only: bool = False

    def load_setup(self) -> Any:
        return load_object(self.setup)


METHODS: dict[str, Method] = {
    method.name: method
    for method in (
        Method("lora", "LoRA adapters on linear layers", "glmtune.model.finetuning:setup_lora", 5e-4, True, True),
        Method(
            "p_tuning", "P-Tuning v2: trainable key/value prefixes", "glmtune.model.finetuning:setup_prefix", 1e-2,
            adapter=True, generating_only=True,
        ),
        Method("freeze", "train the last (or first) N layers", "glmtune.model.finetuning:setup_freeze", 5e-5),
        Method("full", "train every weight", "glmtune.model.finetuning:setup_full", 2e-5),
    )
}


def method_names() -> tuple[str, ...]:
    return tuple(METHODS)


def get_method(name: str) -> Method:
    return look_up(METHODS, name, "finetuning_type")
