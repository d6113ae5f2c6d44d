"""Baichuan-7B and Baichuan2-7B (fused W_pack, Baichuan2's normalised head) -> native LlamaForCausalLM.

The reference forward is written from the architecture description, not transformers' Llama
code: pre-RMSNorm blocks; W_pack's rows are [q; k; v]; rotary embeddings over every head dim,
the second half of the dims paired with the first (base 10000); SwiGLU from gate_proj and
up_proj; a final RMSNorm; the output head, whose rows Baichuan2 divides by their L2 norm.
"""

import json
import math
from pathlib import Path

import pytest
import torch
from chatglm_checkpoint import rms_norm, save_file
from tiny_sentencepiece import TEXTS, train_sentencepiece

from glmtune.cli import main
from glmtune.convert.layout import UnsupportedLayoutError, detect_layout
from glmtune.model_source import resolve_model_source

BAICHUAN2_7B = {
    "architectures": ["BaichuanForCausalLM"],
    "auto_map": {"AutoConfig": "configuration_baichuan.BaichuanConfig", "AutoModelForCausalLM": "modeling_baichuan.BaichuanForCausalLM"},
    "model_type": "baichuan",
    "hidden_act": "silu",
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "max_position_embeddings": 256,
    "model_max_length": 256,
    "rms_norm_eps": 1e-06,
    "vocab_size": 128,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 0,
    "tie_word_embeddings": False,
    "torch_dtype": "float32",
}
BAICHUAN_7B = {**BAICHUAN2_7B, "architectures": ["BaiChuanForCausalLM"]}
IDS = [1, 17, 5, 99, 64, 3, 127, 42, 8, 8, 30, 71]


def baichuan_state_dict(config: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    h, ffn, vocab = config["hidden_size"], config["intermediate_size"], config["vocab_size"]

    def rand(*shape: int, scale: float = 0.1) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) * scale

    state = {"model.embed_tokens.weight": rand(vocab, h, scale=1.0)}
    for i in range(config["num_hidden_layers"]):
        prefix = f"model.layers.{i}."
        state[prefix + "self_attn.W_pack.weight"] = rand(3 * h, h)
        state[prefix + "self_attn.o_proj.weight"] = rand(h, h)
        state[prefix + "self_attn.rotary_emb.inv_freq"] = torch.ones(h // config["num_attention_heads"] // 2)
        state[prefix + "mlp.gate_proj.weight"] = rand(ffn, h)
        state[prefix + "mlp.up_proj.weight"] = rand(ffn, h)
        state[prefix + "mlp.down_proj.weight"] = rand(h, ffn)
        state[prefix + "input_layernorm.weight"] = 1 + rand(h)
        state[prefix + "post_attention_layernorm.weight"] = 1 + rand(h)
    state["model.norm.weight"] = 1 + rand(h)
    state["lm_head.weight"] = rand(vocab, h, scale=3.0)  # rows far from unit norm, so normalising shows
    return state


def save_baichuan(directory: Path, config: dict, state: dict[str, torch.Tensor], code: str = "") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    if code:
        (directory / "modeling_baichuan.py").write_text(code)
    save_file(state, directory / "pytorch_model.bin", safetensors=False)
    return directory


def rotate(x: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """x: [seq, heads, head_dim]; dim j is paired with dim j + head_dim / 2 and rotated by position * theta_j."""
    seq, _, head_dim = x.shape
    theta = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(seq, dtype=torch.float32), theta)[:, None, :]
    first, second = x[..., : head_dim // 2], x[..., head_dim // 2 :]
    return torch.cat([first * angles.cos() - second * angles.sin(), second * angles.cos() + first * angles.sin()], dim=-1)


def reference_logits(config: dict, state: dict[str, torch.Tensor], ids: list[int], norm_head: bool) -> torch.Tensor:
    h, heads, eps = config["hidden_size"], config["num_attention_heads"], config["rms_norm_eps"]
    hd, seq = h // heads, len(ids)
    causal = torch.ones(seq, seq, dtype=torch.bool).tril()
    x = state["model.embed_tokens.weight"][torch.tensor(ids)]
    for i in range(config["num_hidden_layers"]):
        weight = {name.removeprefix(f"model.layers.{i}."): t for name, t in state.items() if name.startswith(f"model.layers.{i}.")}
        q, k, v = (rms_norm(x, weight["input_layernorm.weight"], eps) @ weight["self_attn.W_pack.weight"].T).split(h, dim=-1)
        q, k, v = rotate(q.view(seq, heads, hd)), rotate(k.view(seq, heads, hd)), v.view(seq, heads, hd)
        scores = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(hd)
        context = torch.einsum("hqk,khd->qhd", scores.masked_fill(~causal, float("-inf")).softmax(-1), v).reshape(seq, h)
        x = x + context @ weight["self_attn.o_proj.weight"].T
        y = rms_norm(x, weight["post_attention_layernorm.weight"], eps)
        x = x + (torch.nn.functional.silu(y @ weight["mlp.gate_proj.weight"].T) * (y @ weight["mlp.up_proj.weight"].T)) @ weight["mlp.down_proj.weight"].T
    head = state["lm_head.weight"]
    if norm_head:
        head = head / head.norm(dim=-1, keepdim=True)
    return rms_norm(x, state["model.norm.weight"], eps) @ head.T


@pytest.mark.parametrize(("config", "norm_head"), [(BAICHUAN_7B, False), (BAICHUAN2_7B, True)], ids=["baichuan-7b", "baichuan2-7b"])
def test_converted_model_logits_equal_the_reference_forward(tmp_path, config, norm_head):
    from transformers import AutoModelForCausalLM

    state = baichuan_state_dict(config)
    assert main(["convert", str(save_baichuan(tmp_path / "original", config, state)), str(tmp_path / "native")]) == 0
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "native", dtype=torch.float32).eval()
    assert type(model).__name__ == "LlamaForCausalLM"
    with torch.no_grad():
        logits = model(torch.tensor([IDS])).logits[0]
    assert logits.abs().max() > 1
    torch.testing.assert_close(logits, reference_logits(config, state, IDS, norm_head), atol=1e-5, rtol=1e-5)
    if norm_head:  # the unnormalised head gives other logits: the normalisation is really baked in
        assert not torch.allclose(logits, reference_logits(config, state, IDS, norm_head=False), atol=1e-3)


def test_the_modeling_code_decides_the_head(tmp_path):
    """A Baichuan2 folder's code defines NormHead; without the code the class name decides (checked above)."""
    state = baichuan_state_dict(BAICHUAN_7B)
    source = save_baichuan(tmp_path / "original", BAICHUAN_7B, state, code="class NormHead(nn.Module): ...\n")
    assert main(["convert", str(source), str(tmp_path / "native")]) == 0
    config = json.loads((tmp_path / "native" / "config.json").read_text())
    assert config["baichuan_layout"]["norm_head_baked"] is True
    assert (tmp_path / "native" / "baichuan_original" / "modeling_baichuan.py").is_file()


def test_baichuan_13b_alibi_is_refused_with_the_reason(tmp_path, capsys):
    config_13b = {key: value for key, value in BAICHUAN2_7B.items() if key != "max_position_embeddings"}
    with pytest.raises(UnsupportedLayoutError, match="ALiBi.*--trust_remote_code"):
        detect_layout(config_13b)
    source = save_baichuan(tmp_path / "original", BAICHUAN2_7B, baichuan_state_dict(BAICHUAN2_7B), code="def _get_alibi_mask(): ...\n")
    assert main(["convert", str(source), str(tmp_path / "native")]) == 2
    assert "ALiBi" in capsys.readouterr().err and not (tmp_path / "native").exists()


def test_every_tensor_is_accounted_for(tmp_path, capsys):
    state = baichuan_state_dict(BAICHUAN2_7B)
    state.pop("model.layers.1.mlp.up_proj.weight")
    state["model.layers.0.self_attn.extra.weight"] = torch.zeros(2)
    assert main(["convert", str(save_baichuan(tmp_path / "original", BAICHUAN2_7B, state)), str(tmp_path / "native")]) == 2
    error = capsys.readouterr().err
    assert "does not know: model.layers.0.self_attn.extra.weight" in error and "missing: model.layers.1.mlp.up_proj" in error


def test_a_baichuan_folder_given_as_a_model_is_converted_with_its_tokenizer(tmp_path, monkeypatch):
    import sentencepiece
    from transformers import AutoTokenizer

    monkeypatch.setenv("GLMTUNE_HOME", str(tmp_path / "home"))
    config = {**BAICHUAN2_7B, "vocab_size": 512}
    source = save_baichuan(tmp_path / "original", config, baichuan_state_dict(config))
    train_sentencepiece(source / "tokenizer.model")
    native, _ = resolve_model_source(str(source))
    assert json.loads((Path(native) / "config.json").read_text())["model_type"] == "llama"
    tokenizer = AutoTokenizer.from_pretrained(native)
    processor = sentencepiece.SentencePieceProcessor(model_file=str(source / "tokenizer.model"))
    for text in (TEXTS["english"], TEXTS["chinese"], TEXTS["whitespace"]):
        assert tokenizer(text)["input_ids"] == processor.encode(text)
    assert (tokenizer.eos_token_id, tokenizer.pad_token_id) == (2, 0)
