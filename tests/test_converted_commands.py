"""A tiny ChatGLM3-layout folder and a tiny Baichuan2-layout folder, each given as the model itself (converted on
first use), go through every command: LoRA `glmtune train`, chat, the API's /v1/chat/completions, `glmtune export`.

Their remote code raises when imported, so any step that ran it instead of the native conversion fails.
"""

import json
from pathlib import Path

import pytest
from chatglm_checkpoint import TINY_CHATGLM, original_state_dict, save_original
from fastapi.testclient import TestClient
from test_convert_baichuan import BAICHUAN2_7B, baichuan_state_dict, save_baichuan
from tiny_sentencepiece import train_sentencepiece
from train_helpers import (
    run_train,
    step_losses,
    train_argv,
    train_env,  # noqa: F401  (fixture)
    write_sft_data,
)

from glmtune.api.app import create_app
from glmtune.api.engine import Engine
from glmtune.chat.chat_model import ChatModel
from glmtune.cli import main
from glmtune.hparams import DataArguments, GeneratingArguments, ModelArguments
from glmtune.hparams.api_args import ApiArguments

pytestmark = pytest.mark.usefixtures("train_env")
REMOTE_CODE = 'raise RuntimeError("remote code ran")\n'
QUESTION = [{"role": "user", "content": "What is 2 + 2?"}]


def chatglm3_folder(root: Path) -> Path:
    config = {**TINY_CHATGLM, "padded_vocab_size": 512}
    source = save_original(root / "chatglm3", config, original_state_dict(config))
    train_sentencepiece(source / "tokenizer.model")
    roles = 'role_special_tokens = ["<|system|>", "<|user|>", "<|assistant|>", "<|observation|>"]\n'
    (source / "tokenization_chatglm.py").write_text(REMOTE_CODE + roles)
    (source / "modeling_chatglm.py").write_text(REMOTE_CODE)
    return source


def baichuan2_folder(root: Path) -> Path:
    config = {**BAICHUAN2_7B, "vocab_size": 512}
    source = save_baichuan(root / "baichuan2", config, baichuan_state_dict(config), code=REMOTE_CODE + "class NormHead: ...\n")
    train_sentencepiece(source / "tokenizer.model")
    return source


FAMILIES = {
    "chatglm3": (chatglm3_folder, "chatglm3", "glm", ["native", "chatglm"]),
    "baichuan2": (baichuan2_folder, "baichuan2", "llama", ["native"]),
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_an_original_layout_folder_trains_chats_serves_and_exports(family, tmp_path):
    build, template, native_type, formats = FAMILIES[family]
    source = build(tmp_path)
    argv = train_argv(source, write_sft_data(tmp_path, rows=8), tmp_path / "lora", "--template", template,
                      "--finetuning_type", "lora", "--lora_rank", "4", "--max_steps", "2", "--cutoff_len", "32")  # fmt: skip
    adapter = run_train(argv)
    assert sorted(step_losses(adapter)) == [1, 2]

    chat_model = ChatModel.from_args(
        ModelArguments(model_name_or_path=str(source), adapter_name_or_path=str(adapter)),
        DataArguments(template=template),
        GeneratingArguments(max_new_tokens=4),
    )
    answer = chat_model.chat(QUESTION, temperature=0, max_new_tokens=4)
    assert isinstance(answer.text, str) and answer.completion_tokens >= 1

    settings = ApiArguments(port=0)
    app = create_app(Engine(chat_model, settings.max_batch_size, settings.max_waiting), settings, "tiny")
    with TestClient(app) as client:
        response = client.post("/v1/chat/completions", json={"model": "tiny", "messages": QUESTION, "temperature": 0, "max_tokens": 4})
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == answer.text

    exported = {}
    for export_format in formats:
        out = tmp_path / f"export-{export_format}"
        args = ["export", "--model", str(source), "--adapter", str(adapter), "--out", str(out), "--format", export_format]
        assert main(args) == 0
        config = json.loads((out / "config.json").read_text())
        assert config["model_type"] == (native_type if export_format == "native" else "chatglm")
        assert (out / ("tokenizer.json" if export_format == "native" else "tokenizer.model")).is_file()
        exported[export_format] = out
    merged = ChatModel.from_args(ModelArguments(model_name_or_path=str(exported["native"])), DataArguments(template=template), None)
    assert merged.chat(QUESTION, temperature=0, max_new_tokens=4).text == answer.text
