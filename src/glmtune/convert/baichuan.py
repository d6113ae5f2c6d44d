"""Convert a Baichuan-7B or Baichuan2-7B folder (remote code) to a native LlamaForCausalLM folder.

Both are Llama blocks (RMSNorm, rotary on every head dim in halves, SwiGLU) with q, k and
v fused into one W_pack projection, stacked on the output dim in that order, so the mapping
is a rename and one split. Baichuan2's NormHead divides each output-head row by its L2 norm
before every product; a plain Linear cannot, so the converted lm_head holds the rows already
normalised (the same logits; a later full fine-tune of the head no longer renormalises).
Baichuan-13B and Baichuan2-13B use ALiBi instead of rotary positions: no native class does.
"""

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from glmtune.convert.chatglm import copy_side_files, write_json
from glmtune.convert.chatglm_weights import check_accounted, checked
from glmtune.convert.checkpoint_io import (
    DEFAULT_SHARD_BYTES,
    TensorSource,
    write_safetensors,
)
from glmtune.convert.layout import ALIBI_REFUSAL, UnsupportedLayoutError, read_config
from glmtune.convert.sentencepiece_fast import fast_tokenizer, is_sentencepiece

logger = logging.getLogger(__name__)
LAYOUT_KEY = "baichuan_layout"
ORIGINALS_DIR = "baichuan_original"
MODELING_CODE = "modeling_baichuan.py"
W_PACK = "model.layers.{i}.self_attn.W_pack.weight"
INV_FREQ = "model.layers.{i}.self_attn.rotary_emb.inv_freq"  # a buffer the remote code saves and recomputes
PER_LAYER = (
    "input_layernorm.weight",
    "self_attn.o_proj.weight",
    "post_attention_layernorm.weight",
    "mlp.gate_proj.weight",
    "mlp.up_proj.weight",
    "mlp.down_proj.weight",
)


def modeling_code(source: Path) -> str:
    path = source / MODELING_CODE
    return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""


def check_rotary(code: str) -> None:
    """Refuse a checkpoint whose modeling code builds ALiBi biases, whatever its config says (detect_layout reads the config)."""
    if "alibi" in code.lower():
        raise UnsupportedLayoutError(ALIBI_REFUSAL)


def has_norm_head(original: dict[str, Any], code: str) -> bool:
    """Baichuan2 normalises its output head; its code defines NormHead, its class is spelt BaichuanForCausalLM."""
    if code:
        return "NormHead" in code
    return "BaichuanForCausalLM" in original.get("architectures", [])


def to_native_config(original: dict[str, Any], norm_head: bool) -> dict[str, Any]:
    heads = original["num_attention_heads"]
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": original["vocab_size"],
        "hidden_size": original["hidden_size"],
        "intermediate_size": original["intermediate_size"],
        "num_hidden_layers": original["num_hidden_layers"],
        "num_attention_heads": heads,
        "num_key_value_heads": heads,
        "head_dim": original["hidden_size"] // heads,
        "hidden_act": original.get("hidden_act", "silu"),
        "max_position_embeddings": original["max_position_embeddings"],
        "rms_norm_eps": original.get("rms_norm_eps", 1e-6),
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": False,
        "bos_token_id": original.get("bos_token_id"),
        "eos_token_id": original.get("eos_token_id"),
        "pad_token_id": original.get("pad_token_id"),
        "use_cache": True,
        "dtype": original.get("torch_dtype", "float32"),
        LAYOUT_KEY: {"config": original, "norm_head_baked": norm_head},
    }


def expected_shapes(original: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    h, ffn, vocab = original["hidden_size"], original["intermediate_size"], original["vocab_size"]
    per_layer = dict(zip(PER_LAYER, [(h,), (h, h), (h,), (ffn, h), (ffn, h), (h, ffn)]))
    table = {"model.embed_tokens.weight": (vocab, h), "model.norm.weight": (h,), "lm_head.weight": (vocab, h)}
    for i in range(original["num_hidden_layers"]):
        table.update({f"model.layers.{i}.{name}": shape for name, shape in per_layer.items()})
        table[W_PACK.format(i=i)] = (3 * h, h)
    return table


def to_native_tensors(source: TensorSource, original: dict[str, Any], norm_head: bool) -> Iterator[tuple[str, Any]]:
    """LlamaForCausalLM tensors: W_pack split into q/k/v, the head normalised where Baichuan2 normalises it."""
    import torch

    expected = expected_shapes(original)
    buffers = {INV_FREQ.format(i=i) for i in range(original["num_hidden_layers"])}
    check_accounted(source.names(), expected, buffers, "Baichuan -> native")
    packs = {W_PACK.format(i=i): i for i in range(original["num_hidden_layers"])}
    for name in source.names():
        if name in buffers:
            continue
        tensor = checked(name, source.get(name), expected)
        if name in packs:
            parts = (f"model.layers.{packs[name]}.self_attn.{part}_proj.weight" for part in "qkv")
            yield from zip(parts, tensor.chunk(3, dim=0))
        elif name == "lm_head.weight" and norm_head:
            yield name, torch.nn.functional.normalize(tensor.float(), dim=-1).to(tensor.dtype)
        else:
            yield name, tensor


def write_tokenizer(source: Path, target: Path) -> None:
    """The source's fast tokenizer as is, else its SentencePiece model converted (no bos added, as Baichuan2's)."""
    from transformers import PreTrainedTokenizerFast

    model_file = source / "tokenizer.model"
    if (source / "tokenizer.json").is_file() or not model_file.is_file() or not is_sentencepiece(model_file):
        return
    import sentencepiece

    processor = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
    try:
        backend = fast_tokenizer(model_file)
    except UnsupportedLayoutError as error:
        logger.warning("no fast tokenizer written: %s; put a tokenizer.json beside the weights", error)
        return
    unk = processor.id_to_piece(processor.unk_id())
    PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=processor.id_to_piece(processor.bos_id()),
        eos_token=processor.id_to_piece(processor.eos_id()),
        unk_token=unk,
        pad_token=unk,
        clean_up_tokenization_spaces=False,
    ).save_pretrained(target)


def convert_baichuan(source: Path, target: Path, max_shard_bytes: int = DEFAULT_SHARD_BYTES) -> Path:
    """Write the LlamaForCausalLM equivalent of the Baichuan folder `source` into the (empty) folder `target`."""
    original = read_config(source)
    code = modeling_code(source)
    check_rotary(code)
    norm_head = has_norm_head(original, code)
    target.mkdir(parents=True, exist_ok=True)
    write_safetensors(to_native_tensors(TensorSource(source), original, norm_head), target, max_shard_bytes)
    write_json(target / "config.json", to_native_config(original, norm_head))
    write_tokenizer(source, target)
    copy_side_files(source, target, ORIGINALS_DIR)
    return target
