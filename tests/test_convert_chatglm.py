"""ChatGLM2/3 and GLM-4 checkpoints in the original layout -> native GlmForCausalLM, and back."""

import json
import logging
from pathlib import Path

import pytest
import torch
from chatglm_checkpoint import (
    TINY_CHATGLM,
    original_state_dict,
    reference_logits,
    save_original,
)

from glmtune.cli import main
from glmtune.convert.chatglm import export_chatglm
from glmtune.convert.chatglm_config import original_shapes, to_native_config
from glmtune.convert.chatglm_weights import (
    INV_FREQ,
    check_accounted,
    original_shapes_table,
)
from glmtune.convert.checkpoint_io import TensorSource
from glmtune.convert.command import convert
from glmtune.convert.layout import UnsupportedLayoutError, detect_layout
from glmtune.model_source import resolve_model_source

PUBLISHED = Path(__file__).parent / "data" / "chatglm3-6b"
VARIANTS = {
    "chatglm3-sharded-bin": ({}, {"shards": 3}),
    "glm4-safetensors": ({"rope_ratio": 500, "layernorm_epsilon": 1.5625e-07, "eos_token_id": [2, 5]}, {"shards": 2, "safetensors": True}),
    "multi-head-no-bias": ({"multi_query_attention": False, "add_qkv_bias": False, "rope_ratio": 50}, {}),
}
IDS = [1, 17, 5, 99, 64, 3, 127, 42, 8, 8, 30, 71]


def make_original(directory: Path, dtype: torch.dtype = torch.float32, **changes) -> tuple[dict, dict]:
    config = {**TINY_CHATGLM, **changes, "torch_dtype": str(dtype).removeprefix("torch.")}
    state = original_state_dict(config, dtype=dtype)
    return config, state


@pytest.mark.parametrize("variant", VARIANTS)
def test_converted_model_logits_equal_the_reference_forward(variant, tmp_path):
    from transformers import AutoModelForCausalLM

    changes, layout = VARIANTS[variant]
    config, state = make_original(tmp_path, **changes)
    save_original(tmp_path / "original", config, state, **layout)
    assert main(["convert", str(tmp_path / "original"), str(tmp_path / "native")]) == 0
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "native", dtype=torch.float32).eval()
    assert type(model).__name__ == "GlmForCausalLM"
    with torch.no_grad():
        logits = model(torch.tensor([IDS])).logits[0]
    expected = reference_logits(config, state, IDS)
    assert logits.abs().max() > 1  # the comparison is not between near-zero numbers
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)


def read_all(directory: Path) -> dict[str, torch.Tensor]:
    source = TensorSource(directory)
    return {name: source.get(name) for name in source.names()}


def assert_bit_identical(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert sorted(actual) == sorted(expected)
    for name, tensor in expected.items():
        assert actual[name].dtype == tensor.dtype, name
        assert torch.equal(actual[name].view(torch.uint8), tensor.contiguous().view(torch.uint8)), name


def test_round_trip_original_native_original_is_bit_identical(tmp_path):
    config, state = make_original(tmp_path, dtype=torch.float16, rope_ratio=50)
    source = save_original(tmp_path / "original", config, state, shards=3)
    native = convert(source, tmp_path / "native", "native", shard_bytes=20_000)
    assert (native / "model.safetensors.index.json").is_file()  # sharded
    back = convert(native, tmp_path / "back", "chatglm", shard_bytes=20_000)
    assert_bit_identical(read_all(back), state)
    assert json.loads((back / "config.json").read_text()) == config
    assert (back / "tokenizer.model").read_bytes() == (source / "tokenizer.model").read_bytes()
    assert (back / "tokenization_chatglm.py").is_file()


def test_a_model_saved_by_transformers_exports_back_to_the_original(tmp_path):
    """What `glmtune export` does after merging: transformers writes the native model, the export maps it back."""
    from transformers import AutoModelForCausalLM

    config, state = make_original(tmp_path)
    native = convert(save_original(tmp_path / "original", config, state), tmp_path / "native", "native", 10**9)
    AutoModelForCausalLM.from_pretrained(native).save_pretrained(tmp_path / "saved", max_shard_size="50KB")
    export_chatglm(tmp_path / "saved", tmp_path / "back", originals=native)
    assert_bit_identical(read_all(tmp_path / "back"), state)
    assert json.loads((tmp_path / "back" / "config.json").read_text()) == config


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda state: state.update({"transformer.prefix_encoder.embedding.weight": torch.zeros(4, 4)}), "does not know: transformer.prefix_encoder"),
        (lambda state: state.pop("transformer.encoder.layers.1.mlp.dense_4h_to_h.weight"), "missing: transformer.encoder.layers.1.mlp.dense_4h_to_h"),
        (lambda state: state.update({"transformer.output_layer.weight": torch.zeros(7, 64)}), "shape (7, 64)"),
    ],
    ids=["leftover", "missing", "wrong-shape"],
)
def test_every_tensor_is_accounted_for(tmp_path, capsys, change, message):
    config, state = make_original(tmp_path)
    change(state)
    save_original(tmp_path / "original", config, state)
    assert main(["convert", str(tmp_path / "original"), str(tmp_path / "native")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "native").exists()  # nothing half-written


def test_options_without_a_native_equivalent_are_refused():
    with pytest.raises(UnsupportedLayoutError, match="apply_residual_connection_post_layernorm=True.*trust_remote_code"):
        to_native_config({**TINY_CHATGLM, "apply_residual_connection_post_layernorm": True})


def test_chatglm_6b_v1_is_refused_with_the_reason():
    v1 = {"model_type": "chatglm", "position_encoding_2d": True, "num_layers": 28, "inner_hidden_size": 16384}
    with pytest.raises(UnsupportedLayoutError, match="2D position ids.*--trust_remote_code"):
        detect_layout(v1)


def test_published_chatglm3_6b_tensor_names_are_all_mapped():
    config = json.loads((PUBLISHED / "config.json").read_text())
    names = list(json.loads((PUBLISHED / "pytorch_model.bin.index.json").read_text())["weight_map"])
    check_accounted(names, original_shapes_table(original_shapes(config)), {INV_FREQ}, "ChatGLM -> native")
    native = to_native_config(config)
    assert (native["vocab_size"], native["num_key_value_heads"], native["head_dim"]) == (65024, 2, 128)
    assert (native["intermediate_size"], native["max_position_embeddings"], native["attention_bias"]) == (13696, 8192, True)
    assert native["rope_parameters"] == {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5}


def test_a_chatglm_folder_given_as_a_model_is_converted_once_and_cached(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("GLMTUNE_HOME", str(tmp_path / "home"))
    config, state = make_original(tmp_path)
    source = save_original(tmp_path / "original", config, state)
    with caplog.at_level(logging.INFO, logger="glmtune"):
        first, _ = resolve_model_source(str(source))
        second, _ = resolve_model_source(str(source))
    assert first == second and Path(first).is_relative_to(tmp_path / "home" / "converted")
    assert len([record for record in caplog.records if "converting it once" in record.getMessage()]) == 1
    assert json.loads((Path(first) / "config.json").read_text())["model_type"] == "glm"
    assert resolve_model_source(str(source), remote_code=True)[0] == str(source)
    state["transformer.output_layer.weight"] += 1  # new content, new conversion
    save_original(source, config, state)
    assert resolve_model_source(str(source))[0] != first


def test_convert_refuses_a_non_empty_target_and_a_native_source(tmp_path, capsys):
    config, state = make_original(tmp_path)
    source = save_original(tmp_path / "original", config, state)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    assert main(["convert", str(source), str(tmp_path / "busy")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["convert", str(source), str(tmp_path / "native")]) == 0
    assert main(["convert", str(tmp_path / "native"), str(tmp_path / "again")]) == 2
    assert "not in the ChatGLM or Baichuan layout" in capsys.readouterr().err


def test_export_format_chatglm_writes_the_original_layout(tmp_path, tiny_tokenizer_dir, monkeypatch):
    """A ChatGLM folder given as the model, exported back with `glmtune export --format chatglm`: the same tensors."""
    import shutil

    monkeypatch.setenv("GLMTUNE_HOME", str(tmp_path / "home"))
    config, state = make_original(tmp_path, padded_vocab_size=512)
    source = save_original(tmp_path / "original", config, state)
    for path in tiny_tokenizer_dir.iterdir():  # a fast tokenizer, until SentencePiece conversion exists
        shutil.copy2(path, source / path.name)
    out = tmp_path / "exported"
    assert main(["export", "--model", str(source), "--out", str(out), "--format", "chatglm"]) == 0
    assert_bit_identical(read_all(out), state)
    assert json.loads((out / "config.json").read_text()) == config
    assert (out / "tokenization_chatglm.py").is_file() and not list(tmp_path.glob(".exported*"))


def test_export_format_chatglm_refuses_other_architectures(tiny_llama_dir, tmp_path, capsys):
    assert main(["export", "--model", str(tiny_llama_dir), "--out", str(tmp_path / "out"), "--format", "chatglm"]) == 2
    assert "--format chatglm writes GLM models" in capsys.readouterr().err
