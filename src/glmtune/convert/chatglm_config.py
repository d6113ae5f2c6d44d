"""ChatGLM2/3 and GLM-4 config.json <-> transformers' GlmConfig, field by field.

The original config travels inside the native one (`chatglm_layout`), so an export back to
the original layout writes the same config.json the user started from.
"""

from dataclasses import dataclass
from typing import Any

from glmtune.convert.layout import REMOTE_CODE_HINT, UnsupportedLayoutError

LAYOUT_KEY = "chatglm_layout"
ROPE_BASE = 10000.0  # ChatGLM's rotary base before rope_ratio scales it
# Options of the original code that change the architecture: the value GlmForCausalLM computes.
REQUIRED = {
    "rmsnorm": True,
    "post_layer_norm": True,
    "add_bias_linear": False,
    "apply_residual_connection_post_layernorm": False,
}
# ChatGLMConfig's defaults for the fields the reverse mapping writes: a key the user's config omitted stays omitted.
ORIGINAL_DEFAULTS: dict[str, Any] = {
    **REQUIRED,
    "model_type": "chatglm",
    "attention_dropout": 0.0,
    "layernorm_epsilon": 1e-5,
    "seq_length": 2048,
    "add_qkv_bias": False,
    "multi_query_attention": False,
    "multi_query_group_num": 1,
    "rope_ratio": 1,
    "tie_word_embeddings": False,
    "pad_token_id": None,
    "eos_token_id": None,
}


@dataclass(frozen=True)
class Shapes:
    """The sizes the weight mapping needs, in either layout."""

    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    ffn_size: int
    vocab_size: int
    qkv_bias: bool

    @property
    def q_size(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_kv_heads * self.head_dim


def check_supported(original: dict[str, Any]) -> None:
    """Refuse options GlmForCausalLM does not compute, naming each, instead of converting to a different model."""
    wrong = [f"{key}={original[key]!r}" for key, value in REQUIRED.items() if key in original and original[key] != value]
    if original.get("pre_seq_len"):
        wrong.append(f"pre_seq_len={original['pre_seq_len']} (a P-Tuning v2 prefix: convert the base model, then train or load the prefix with glmtune)")
    if wrong:
        raise UnsupportedLayoutError(f"this ChatGLM config has options no native class computes: {', '.join(wrong)}; {REMOTE_CODE_HINT}")


def original_shapes(original: dict[str, Any]) -> Shapes:
    heads = original["num_attention_heads"]
    return Shapes(
        num_layers=original["num_layers"],
        hidden_size=original["hidden_size"],
        num_heads=heads,
        num_kv_heads=original["multi_query_group_num"] if original.get("multi_query_attention") else heads,
        head_dim=original.get("kv_channels") or original["hidden_size"] // heads,
        ffn_size=original["ffn_hidden_size"],
        vocab_size=original["padded_vocab_size"],
        qkv_bias=bool(original.get("add_qkv_bias", False)),
    )


def native_shapes(native: dict[str, Any]) -> Shapes:
    heads = native["num_attention_heads"]
    return Shapes(
        num_layers=native["num_hidden_layers"],
        hidden_size=native["hidden_size"],
        num_heads=heads,
        num_kv_heads=native.get("num_key_value_heads") or heads,
        head_dim=native.get("head_dim") or native["hidden_size"] // heads,
        ffn_size=native["intermediate_size"],
        vocab_size=native["vocab_size"],
        qkv_bias=bool(native.get("attention_bias", True)),
    )


def to_native_config(original: dict[str, Any]) -> dict[str, Any]:
    """The GlmForCausalLM config.json for an original ChatGLM config (checked by check_supported first)."""
    check_supported(original)
    shapes = original_shapes(original)
    return {
        "architectures": ["GlmForCausalLM"],
        "model_type": "glm",
        "vocab_size": shapes.vocab_size,
        "hidden_size": shapes.hidden_size,
        "intermediate_size": shapes.ffn_size,
        "num_hidden_layers": shapes.num_layers,
        "num_attention_heads": shapes.num_heads,
        "num_key_value_heads": shapes.num_kv_heads,
        "head_dim": shapes.head_dim,
        "hidden_act": "silu",
        "attention_bias": shapes.qkv_bias,
        "attention_dropout": original.get("attention_dropout", 0.0),
        "max_position_embeddings": original.get("seq_length", 2048),
        "rms_norm_eps": original.get("layernorm_epsilon", 1e-5),
        # ChatGLM rotates the first half of each head's dims, in interleaved pairs, with base 10000 * rope_ratio
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": ROPE_BASE * original.get("rope_ratio", 1),
            "partial_rotary_factor": 0.5,
        },
        "tie_word_embeddings": False,  # the original code never ties: output_layer is its own tensor
        "pad_token_id": original.get("pad_token_id"),
        "eos_token_id": original.get("eos_token_id"),
        "bos_token_id": original.get("bos_token_id"),
        "use_cache": True,
        "dtype": original.get("torch_dtype", "float32"),
        LAYOUT_KEY: {"config": original},
    }


def to_original_config(native: dict[str, Any]) -> dict[str, Any]:
    """The ChatGLM config.json for a GlmForCausalLM config: the stored original with the native sizes written over it."""
    rope = native.get("rope_parameters") or {}
    if rope.get("partial_rotary_factor", 0.5) != 0.5 or rope.get("rope_type", "default") != "default":
        raise UnsupportedLayoutError(f"rope_parameters {rope} have no ChatGLM equivalent (half the head dims, default rope)")
    if native.get("hidden_act", "silu") != "silu":
        raise UnsupportedLayoutError(f"hidden_act={native['hidden_act']!r}: ChatGLM's MLP is SwiGLU (silu)")
    shapes = native_shapes(native)
    stored = dict((native.get(LAYOUT_KEY) or {}).get("config") or {})
    rope_ratio = rope.get("rope_theta", ROPE_BASE) / ROPE_BASE
    fields: dict[str, Any] = {
        "model_type": "chatglm",
        "num_layers": shapes.num_layers,
        "hidden_size": shapes.hidden_size,
        "ffn_hidden_size": shapes.ffn_size,
        "num_attention_heads": shapes.num_heads,
        "kv_channels": shapes.head_dim,
        "multi_query_attention": shapes.num_kv_heads != shapes.num_heads,
        "multi_query_group_num": shapes.num_kv_heads,
        "padded_vocab_size": shapes.vocab_size,
        "add_qkv_bias": shapes.qkv_bias,
        "layernorm_epsilon": native.get("rms_norm_eps", 1e-5),
        "seq_length": native.get("max_position_embeddings", 2048),
        "attention_dropout": native.get("attention_dropout", 0.0),
        "tie_word_embeddings": bool(native.get("tie_word_embeddings", False)),
        "pad_token_id": native.get("pad_token_id"),
        "eos_token_id": native.get("eos_token_id"),
        "torch_dtype": native.get("dtype") or native.get("torch_dtype") or "float32",
        **REQUIRED,
    }
    fields["rope_ratio"] = int(rope_ratio) if float(rope_ratio).is_integer() else rope_ratio
    if not stored:
        return fields
    # Keys the original config left out keep the original code's default; only a changed value is written.
    return {**stored, **{key: value for key, value in fields.items() if key in stored or ORIGINAL_DEFAULTS.get(key, object()) != value}}
