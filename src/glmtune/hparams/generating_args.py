"""Decoding settings shared by chat, API, web UI and predict-with-generate.

Models ship the settings they were tuned to answer with, so a setting left empty (None) is
filled in order from: the model's own generation_config, then FALLBACK (ChatGLM Efficient
Tuning's defaults). A value the user gives always wins. ChatModel resolves them once it
knows the model, so every front end decodes the same way.
"""

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

# Used only where neither the user nor the model says anything.
FALLBACK: dict[str, Any] = {
    "do_sample": True,
    "temperature": 0.95,
    "top_p": 0.7,
    "top_k": 50,
    "max_new_tokens": 512,
    "repetition_penalty": 1.0,
}
# The settings a model's generation_config may supply (beams stay off unless asked: streaming and the API need them off).
MODEL_KEYS = tuple(FALLBACK)
EMPTY_HELP = " Empty: the model's generation_config, else {}."


def empty_help(text: str, name: str) -> str:
    return text + EMPTY_HELP.format(FALLBACK[name])


@dataclass
class GeneratingArguments:
    do_sample: bool | None = field(
        default=None,
        # a bare `--do_sample` means true, as for glmtune's other switches (transformers' parser does so only with a default)
        metadata={"help": empty_help("Sample; false or temperature 0 decodes greedily.", "do_sample"), "nargs": "?", "const": True},
    )
    temperature: float | None = field(
        default=None, metadata={"help": empty_help("Sampling temperature; 0 means greedy.", "temperature")}
    )
    top_p: float | None = field(
        default=None, metadata={"help": empty_help("Nucleus sampling: keep the smallest set above top_p.", "top_p")}
    )
    top_k: int | None = field(
        default=None, metadata={"help": empty_help("Keep only the top_k most likely tokens (0 disables).", "top_k")}
    )
    num_beams: int = field(default=1, metadata={"help": "Beam search width; 1 disables beam search."})
    max_new_tokens: int | None = field(
        default=None, metadata={"help": empty_help("Most tokens generated per answer.", "max_new_tokens")}
    )
    repetition_penalty: float | None = field(
        default=None, metadata={"help": empty_help("Above 1.0 discourages repeats.", "repetition_penalty")}
    )
    length_penalty: float = field(default=1.0, metadata={"help": "Beam search length penalty."})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def resolved(self, model_settings: Mapping[str, Any] | None = None) -> "GeneratingArguments":
        """Every empty setting filled from `model_settings` (the model's generation_config), else FALLBACK.

        A temperature given without do_sample means sampling (above 0), whatever the model's do_sample says.
        """
        given = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}
        if "do_sample" not in given and given.get("temperature"):
            given["do_sample"] = True
        known = {key: value for key, value in (model_settings or {}).items() if key in MODEL_KEYS and value is not None}
        return replace(self, **{**FALLBACK, **known, **given})

    def sources(self, model_settings: Mapping[str, Any] | None = None) -> dict[str, str]:
        """Where each resolvable setting comes from: "user", "model" or "glmtune", for the startup log line."""
        model_settings = model_settings or {}
        return {
            key: "user" if getattr(self, key) is not None else "model" if model_settings.get(key) is not None else "glmtune"
            for key in MODEL_KEYS
        }


def model_generation_settings(generation_config: Any) -> dict[str, Any]:
    """The decoding settings a model's generation_config sets (transformers leaves unset ones None)."""
    if generation_config is None:
        return {}
    return {key: getattr(generation_config, key, None) for key in MODEL_KEYS if getattr(generation_config, key, None) is not None}
