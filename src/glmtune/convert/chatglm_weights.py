"""ChatGLM2/3 and GLM-4 tensor names and shapes <-> GlmForCausalLM's, with every tensor accounted for.

The layouts differ only in names and in one fused tensor: ChatGLM's query_key_value holds
q, k and v stacked on the output dim (q for every head, then k and v for each multi-query
group), which GlmForCausalLM keeps as three projections. The MLP's fused dense_h_to_4h is
[gate; up] in both, and both rotate interleaved pairs of the first half of each head's dims,
so no tensor is permuted. A tensor either side does not expect, or one missing, is an error.
"""

from collections.abc import Iterator
from typing import Any

from glmtune.convert.chatglm_config import Shapes
from glmtune.convert.checkpoint_io import TensorSource
from glmtune.convert.layout import UnsupportedLayoutError

# A buffer the original code saves but never reads (it recomputes the rotary table from rope_ratio).
INV_FREQ = "transformer.rotary_pos_emb.inv_freq"
LAYER_RENAMES = {
    "transformer.encoder.layers.{i}.input_layernorm.weight": "model.layers.{i}.input_layernorm.weight",
    "transformer.encoder.layers.{i}.self_attention.dense.weight": "model.layers.{i}.self_attn.o_proj.weight",
    "transformer.encoder.layers.{i}.post_attention_layernorm.weight": "model.layers.{i}.post_attention_layernorm.weight",
    "transformer.encoder.layers.{i}.mlp.dense_h_to_4h.weight": "model.layers.{i}.mlp.gate_up_proj.weight",
    "transformer.encoder.layers.{i}.mlp.dense_4h_to_h.weight": "model.layers.{i}.mlp.down_proj.weight",
}
MODEL_RENAMES = {
    "transformer.embedding.word_embeddings.weight": "model.embed_tokens.weight",
    "transformer.encoder.final_layernorm.weight": "model.norm.weight",
    "transformer.output_layer.weight": "lm_head.weight",
}
FUSED_QKV = "transformer.encoder.layers.{i}.self_attention.query_key_value.{kind}"
SPLIT_QKV = tuple(f"model.layers.{{i}}.self_attn.{part}_proj.{{kind}}" for part in "qkv")


def qkv_kinds(shapes: Shapes) -> tuple[str, ...]:
    return ("weight", "bias") if shapes.qkv_bias else ("weight",)


def renames(shapes: Shapes) -> dict[str, str]:
    """Every one-to-one original -> native name of a model with these shapes."""
    pairs = dict(MODEL_RENAMES)
    for i in range(shapes.num_layers):
        pairs.update({original.format(i=i): native.format(i=i) for original, native in LAYER_RENAMES.items()})
    return pairs


def fused_qkv(shapes: Shapes) -> dict[str, tuple[str, str, str]]:
    """Every fused query_key_value tensor -> its (q, k, v) native names."""
    return {
        FUSED_QKV.format(i=i, kind=kind): tuple(part.format(i=i, kind=kind) for part in SPLIT_QKV)
        for i in range(shapes.num_layers)
        for kind in qkv_kinds(shapes)
    }


def original_shapes_table(shapes: Shapes) -> dict[str, tuple[int, ...]]:
    """Each original tensor's expected shape (the inv_freq buffer aside)."""
    h, qkv = shapes.hidden_size, shapes.q_size + 2 * shapes.kv_size
    table = {
        "transformer.embedding.word_embeddings.weight": (shapes.vocab_size, h),
        "transformer.encoder.final_layernorm.weight": (h,),
        "transformer.output_layer.weight": (shapes.vocab_size, h),
    }
    per_layer = {
        "input_layernorm.weight": (h,),
        "self_attention.query_key_value.weight": (qkv, h),
        "self_attention.dense.weight": (h, shapes.q_size),
        "post_attention_layernorm.weight": (h,),
        "mlp.dense_h_to_4h.weight": (2 * shapes.ffn_size, h),
        "mlp.dense_4h_to_h.weight": (h, shapes.ffn_size),
    }
    if shapes.qkv_bias:
        per_layer["self_attention.query_key_value.bias"] = (qkv,)
    for i in range(shapes.num_layers):
        table.update({f"transformer.encoder.layers.{i}.{name}": shape for name, shape in per_layer.items()})
    return table


def native_shapes_table(shapes: Shapes) -> dict[str, tuple[int, ...]]:
    """Each GlmForCausalLM tensor's expected shape, derived from the original table so the two cannot disagree."""
    original = original_shapes_table(shapes)
    table = {native: original[name] for name, native in renames(shapes).items()}
    sizes = (shapes.q_size, shapes.kv_size, shapes.kv_size)
    for name, parts in fused_qkv(shapes).items():
        table.update({part: (size, *original[name][1:]) for part, size in zip(parts, sizes)})
    return table


def check_accounted(found: list[str], expected: dict[str, tuple[int, ...]], optional: set[str], what: str) -> None:
    """Fail, naming them, on tensors the mapping does not know or expects and cannot find."""
    leftover = [name for name in found if name not in expected and name not in optional]
    missing = [name for name in expected if name not in set(found)]
    problems = []
    if leftover:
        problems.append(f"{len(leftover)} tensor(s) the {what} mapping does not know: {', '.join(leftover[:5])}")
    if missing:
        problems.append(f"{len(missing)} expected tensor(s) missing: {', '.join(missing[:5])}")
    if problems:
        raise UnsupportedLayoutError("; ".join(problems) + " (nothing is guessed: is the checkpoint in the layout its config.json names?)")


def checked(name: str, tensor: Any, expected: dict[str, tuple[int, ...]]) -> Any:
    if tuple(tensor.shape) != expected[name]:
        raise UnsupportedLayoutError(f"{name} has shape {tuple(tensor.shape)}, the config implies {expected[name]}")
    return tensor


def to_native_tensors(source: TensorSource, shapes: Shapes) -> Iterator[tuple[str, Any]]:
    """GlmForCausalLM tensors from an original checkpoint, in the source's order, after checking every name."""
    expected = original_shapes_table(shapes)
    check_accounted(source.names(), expected, {INV_FREQ}, "ChatGLM -> native")
    pairs, fused = renames(shapes), fused_qkv(shapes)
    sizes = [shapes.q_size, shapes.kv_size, shapes.kv_size]
    for name in source.names():
        if name == INV_FREQ:
            continue
        tensor = checked(name, source.get(name), expected)
        if name in fused:
            yield from zip(fused[name], tensor.split(sizes, dim=0))
        else:
            yield pairs[name], tensor


def to_original_tensors(source: TensorSource, shapes: Shapes, inv_freq: Any) -> Iterator[tuple[str, Any]]:
    """Original ChatGLM tensors from a GlmForCausalLM checkpoint; inv_freq (or None) is written beside them."""
    import torch

    expected = native_shapes_table(shapes)
    check_accounted(source.names(), expected, set(), "native -> ChatGLM")
    fused = fused_qkv(shapes)
    if inv_freq is not None:
        yield INV_FREQ, inv_freq
    native_of = renames(shapes)
    for name in original_shapes_table(shapes):
        if name in fused:
            yield name, torch.cat([checked(part, source.get(part), expected) for part in fused[name]], dim=0)
        else:
            yield name, checked(native_of[name], source.get(native_of[name]), expected)
