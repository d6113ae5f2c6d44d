import pytest
import torch
from tiny_models import make_lora_adapter

from glmtune.data.tokenizer import load_tokenizer
from glmtune.errors import ModelNotFoundError
from glmtune.hparams import ModelArguments
from glmtune.model.loader import load_model, pick_dtype
from glmtune.model_source import resolve_model_source


def logits_of(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_cpu_dtype_is_float32():
    assert pick_dtype("auto", "cpu") == torch.float32
    assert pick_dtype("bfloat16", "cpu") == torch.bfloat16


def test_missing_local_path_names_the_path(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model_source(str(tmp_path / "nope"))
    with pytest.raises(ModelNotFoundError, match="without config.json"):
        resolve_model_source(str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="GGUF file"):
        resolve_model_source(str(tmp_path / "x.gguf"))


def test_hub_id_offline_fails_fast_with_a_fix(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as error:
        resolve_model_source("zai-org/chatglm3-6b")
    message = str(error.value)
    assert "zai-org/chatglm3-6b" in message and "hf download" in message and "\n" not in message


def test_hub_id_without_dns_fails_fast(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", "https://no-such-host.invalid")
    with pytest.raises(ModelNotFoundError, match="unreachable"):
        resolve_model_source("zai-org/chatglm3-6b")


def test_loads_tiny_model_for_inference(tiny_model_dir):
    model = load_model(ModelArguments(model_name_or_path=str(tiny_model_dir)))
    tokenizer = load_tokenizer(ModelArguments(model_name_or_path=str(tiny_model_dir)), padding_side="left")
    assert model.dtype == torch.float32 and not model.training
    assert tokenizer.padding_side == "left" and tokenizer.pad_token_id is not None


def test_adapters_merge_in_order(tiny_llama_dir, tmp_path):
    first = make_lora_adapter(tiny_llama_dir, tmp_path / "a1", seed=1)
    second_dir = tmp_path / "a2"
    make_lora_adapter(tiny_llama_dir, second_dir, seed=2, targets=("o_proj",))
    ids = torch.tensor([[3, 7, 11, 13, 17]])

    base = load_model(ModelArguments(model_name_or_path=str(tiny_llama_dir)))
    one = load_model(ModelArguments(model_name_or_path=str(tiny_llama_dir), adapter_name_or_path=str(tmp_path / "a1")))
    assert not torch.allclose(logits_of(base, ids), logits_of(one, ids))
    assert torch.allclose(logits_of(first.eval(), ids), logits_of(one, ids), atol=1e-4)

    both = load_model(
        ModelArguments(model_name_or_path=str(tiny_llama_dir), adapter_name_or_path=f"{tmp_path / 'a1'},{second_dir}")
    )
    from peft import PeftModel

    expected = PeftModel.from_pretrained(one, str(second_dir)).eval()
    assert torch.allclose(logits_of(expected, ids), logits_of(both, ids), atol=1e-4)


def test_missing_adapter_is_named(tiny_llama_dir, tmp_path):
    with pytest.raises(ModelNotFoundError, match="no adapter_config.json"):
        load_model(ModelArguments(model_name_or_path=str(tiny_llama_dir), adapter_name_or_path=str(tmp_path)))
