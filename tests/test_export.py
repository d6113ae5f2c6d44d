import subprocess
import sys

import pytest
from tiny_models import make_lora_adapter
from transformers import AutoModelForCausalLM

from glmtune.chat.chat_model import ChatModel
from glmtune.errors import ConfigError
from glmtune.hparams import DataArguments, GeneratingArguments, ModelArguments
from glmtune.hparams.export_args import ExportArguments
from glmtune.model.export import export_model

QUESTIONS = [[{"role": "user", "content": "What is the capital of France?"}], [{"role": "user", "content": "你好"}]]


def greedy_answers(model_args: ModelArguments) -> list[str]:
    chat_model = ChatModel.from_args(model_args, DataArguments(template="qwen"), GeneratingArguments(temperature=0, max_new_tokens=16))
    return [reply.text for reply in chat_model.batch_chat(QUESTIONS)]


def test_merged_export_generates_exactly_like_base_plus_adapter(tiny_llama_dir, tmp_path):
    make_lora_adapter(tiny_llama_dir, tmp_path / "adapter", seed=3)
    with_adapter = ModelArguments(model_name_or_path=str(tiny_llama_dir), adapter_name_or_path=str(tmp_path / "adapter"))
    out = tmp_path / "merged"
    result = subprocess.run(
        [sys.executable, "-m", "glmtune", "export", "--model", str(tiny_llama_dir), "--adapter", str(tmp_path / "adapter"),
         "--out", str(out), "--export_size", "0.0002"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert len(list(out.glob("model-*.safetensors"))) > 1  # sharded by size
    assert (out / "tokenizer.json").is_file() and (out / "chat_template.jinja").is_file()
    assert not list(out.glob("*.bin"))
    AutoModelForCausalLM.from_pretrained(out)  # plain transformers loads it
    assert greedy_answers(ModelArguments(model_name_or_path=str(out))) == greedy_answers(with_adapter)
    assert greedy_answers(with_adapter) != greedy_answers(ModelArguments(model_name_or_path=str(tiny_llama_dir)))


def test_export_refuses_to_overwrite_a_non_empty_directory(tiny_llama_dir, tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        export_model(ModelArguments(model_name_or_path=str(tiny_llama_dir)), ExportArguments(export_dir=str(tmp_path)))
    assert (tmp_path / "keep.txt").read_text() == "mine"
