"""Tiny random checkpoints in the original ChatGLM2/3 / GLM-4 layout, and a reference forward written from the architecture.

The reference follows the published description of ChatGLM2 (and the original modeling code's
behaviour), never transformers' GLM code: pre-RMSNorm blocks; attention with one fused
query_key_value projection (with bias) whose k and v have `multi_query_group_num` heads shared
by consecutive query heads; rotary embeddings on the first half of each head's dims, rotating
interleaved pairs (x0, x1), (x2, x3), ... with base 10000 * rope_ratio; SwiGLU from the fused
dense_h_to_4h ([gate; up]); a final RMSNorm and an untied output layer.
"""

import json
import math
from pathlib import Path

import torch

# Fields of the published chatglm3-6b config.json, with the sizes made tiny.
TINY_CHATGLM = {
    "_name_or_path": "THUDM/chatglm3-6b",
    "model_type": "chatglm",
    "architectures": ["ChatGLMModel"],
    "auto_map": {
        "AutoConfig": "configuration_chatglm.ChatGLMConfig",
        "AutoModel": "modeling_chatglm.ChatGLMForConditionalGeneration",
        "AutoModelForCausalLM": "modeling_chatglm.ChatGLMForConditionalGeneration",
    },
    "add_bias_linear": False,
    "add_qkv_bias": True,
    "apply_query_key_layer_scaling": True,
    "apply_residual_connection_post_layernorm": False,
    "attention_dropout": 0.0,
    "attention_softmax_in_fp32": True,
    "bias_dropout_fusion": True,
    "ffn_hidden_size": 96,
    "fp32_residual_connection": False,
    "hidden_dropout": 0.0,
    "hidden_size": 64,
    "kv_channels": 16,
    "layernorm_epsilon": 1e-05,
    "multi_query_attention": True,
    "multi_query_group_num": 2,
    "num_attention_heads": 4,
    "num_layers": 2,
    "original_rope": True,
    "padded_vocab_size": 128,
    "post_layer_norm": True,
    "rmsnorm": True,
    "seq_length": 256,
    "use_cache": True,
    "torch_dtype": "float32",
    "transformers_version": "4.30.2",
    "tie_word_embeddings": False,
    "eos_token_id": 2,
    "pad_token_id": 0,
}


def original_state_dict(config: dict, seed: int = 0, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Random tensors named and shaped as in the published chatglm3-6b weight index."""
    generator = torch.Generator().manual_seed(seed)
    h, heads, hd, ffn = config["hidden_size"], config["num_attention_heads"], config["kv_channels"], config["ffn_hidden_size"]
    groups = config["multi_query_group_num"] if config["multi_query_attention"] else heads
    qkv = (heads + 2 * groups) * hd

    def rand(*shape: int, scale: float = 0.1) -> torch.Tensor:
        return (torch.randn(*shape, generator=generator) * scale).to(dtype)

    def norm() -> torch.Tensor:
        return (1 + torch.randn(h, generator=generator) * 0.1).to(dtype)

    rotary_dim = hd // 2  # the original RotaryEmbedding(dim=kv_channels // 2) buffer, computed in the model dtype
    state = {
        "transformer.embedding.word_embeddings.weight": rand(config["padded_vocab_size"], h, scale=1.0),
        "transformer.rotary_pos_emb.inv_freq": 1.0 / (10000 ** (torch.arange(0, rotary_dim, 2).to(dtype) / rotary_dim)),
    }
    for i in range(config["num_layers"]):
        prefix = f"transformer.encoder.layers.{i}."
        state[prefix + "input_layernorm.weight"] = norm()
        state[prefix + "self_attention.query_key_value.weight"] = rand(qkv, h)
        if config["add_qkv_bias"]:
            state[prefix + "self_attention.query_key_value.bias"] = rand(qkv)
        state[prefix + "self_attention.dense.weight"] = rand(h, heads * hd)
        state[prefix + "post_attention_layernorm.weight"] = norm()
        state[prefix + "mlp.dense_h_to_4h.weight"] = rand(2 * ffn, h)
        state[prefix + "mlp.dense_4h_to_h.weight"] = rand(h, ffn)
    state["transformer.encoder.final_layernorm.weight"] = norm()
    state["transformer.output_layer.weight"] = rand(config["padded_vocab_size"], h)
    return state


def save_original(directory: Path, config: dict, state: dict[str, torch.Tensor], shards: int = 1, safetensors: bool = False) -> Path:
    """Write a ChatGLM folder as published: config.json, weights (sharded .bin with an index, or safetensors), tokenizer files."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (directory / "tokenizer.model").write_bytes(b"not a real sentencepiece model")
    (directory / "tokenization_chatglm.py").write_text("# the original tokenizer's remote code\n")
    names = list(state)
    suffix, stem = (".safetensors", "model") if safetensors else (".bin", "pytorch_model")
    if shards == 1:
        save_file({name: state[name] for name in names}, directory / (stem + suffix), safetensors)
        return directory
    weight_map = {}
    per_shard = math.ceil(len(names) / shards)
    for number in range(shards):
        file = f"{stem}-{number + 1:05d}-of-{shards:05d}{suffix}"
        part = names[number * per_shard : (number + 1) * per_shard]
        save_file({name: state[name] for name in part}, directory / file, safetensors)
        weight_map.update(dict.fromkeys(part, file))
    index = {"metadata": {"total_size": sum(t.numel() * t.element_size() for t in state.values())}, "weight_map": weight_map}
    (directory / f"{stem}{suffix}.index.json").write_text(json.dumps(index, indent=2))
    return directory


def save_file(tensors: dict[str, torch.Tensor], path: Path, safetensors: bool) -> None:
    if safetensors:
        from safetensors.torch import save_file as save_safetensors

        save_safetensors(tensors, str(path))
    else:
        torch.save(tensors, path)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rotate_first_half(x: torch.Tensor, base: float) -> torch.Tensor:
    """x: [seq, heads, head_dim]; rotate interleaved pairs of the first head_dim / 2 dims by position * theta_j."""
    seq, _, head_dim = x.shape
    rotary = head_dim // 2
    theta = 1.0 / (base ** (torch.arange(0, rotary, 2, dtype=torch.float32) / rotary))
    angles = torch.outer(torch.arange(seq, dtype=torch.float32), theta)[:, None, :]  # [seq, 1, rotary / 2]
    cos, sin = angles.cos(), angles.sin()
    pairs = x[..., :rotary].reshape(seq, x.shape[1], rotary // 2, 2)
    even, odd = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack([even * cos - odd * sin, odd * cos + even * sin], dim=-1).flatten(-2)
    return torch.cat([rotated, x[..., rotary:]], dim=-1)


def reference_logits(config: dict, state: dict[str, torch.Tensor], ids: list[int]) -> torch.Tensor:
    """Logits [seq, vocab] of one unpadded sequence, from the original tensors."""
    heads, hd, eps = config["num_attention_heads"], config["kv_channels"], config["layernorm_epsilon"]
    groups = config["multi_query_group_num"] if config["multi_query_attention"] else heads
    base = 10000 * config.get("rope_ratio", 1)
    seq = len(ids)
    causal = torch.ones(seq, seq, dtype=torch.bool).tril()
    x = state["transformer.embedding.word_embeddings.weight"][torch.tensor(ids)]
    for i in range(config["num_layers"]):
        layer = {name.removeprefix(f"transformer.encoder.layers.{i}."): t for name, t in state.items() if name.startswith(f"transformer.encoder.layers.{i}.")}
        h = rms_norm(x, layer["input_layernorm.weight"], eps)
        mixed = h @ layer["self_attention.query_key_value.weight"].T + layer.get("self_attention.query_key_value.bias", 0)
        q, k, v = mixed.split([heads * hd, groups * hd, groups * hd], dim=-1)
        q = rotate_first_half(q.view(seq, heads, hd), base)
        k = rotate_first_half(k.view(seq, groups, hd), base).repeat_interleave(heads // groups, dim=1)
        v = v.view(seq, groups, hd).repeat_interleave(heads // groups, dim=1)
        scores = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(hd)
        weights = scores.masked_fill(~causal, float("-inf")).softmax(dim=-1)
        context = torch.einsum("hqk,khd->qhd", weights, v).reshape(seq, heads * hd)
        x = x + context @ layer["self_attention.dense.weight"].T
        h = rms_norm(x, layer["post_attention_layernorm.weight"], eps)
        gate, up = (h @ layer["mlp.dense_h_to_4h.weight"].T).chunk(2, dim=-1)
        x = x + (torch.nn.functional.silu(gate) * up) @ layer["mlp.dense_4h_to_h.weight"].T
    x = rms_norm(x, state["transformer.encoder.final_layernorm.weight"], eps)
    return x @ state["transformer.output_layer.weight"].T
