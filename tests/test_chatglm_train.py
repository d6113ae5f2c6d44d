"""LoRA, freeze and P-Tuning v2 train through `glmtune train` on a tiny ChatGLM3-layout folder, converted on first use,
and what they produce exports back to the original layout and converts again to the same model."""

from pathlib import Path

import pytest
import torch
from chatglm_checkpoint import TINY_CHATGLM, original_state_dict, save_original
from tiny_sentencepiece import train_sentencepiece
from train_helpers import (
    base_logits,
    run_train,
    step_losses,
    train_argv,
    train_env,  # noqa: F401  (fixture)
    write_sft_data,
)

from glmtune.cli import main
from glmtune.convert.command import convert
from glmtune.hparams.entry import get_infer_args

pytestmark = pytest.mark.usefixtures("train_env")
IDS = torch.tensor([[401, 403, 406, 17, 5, 99, 64, 407]])  # [gMASK] sop <|user|> ... <|assistant|> for a 400-piece model
METHODS = {
    "lora": ["--lora_rank", "4"],
    "freeze": ["--num_layer_trainable", "1"],
    "p_tuning": ["--pre_seq_len", "4"],
}


@pytest.fixture
def chatglm_dir(tmp_path: Path) -> Path:
    config = {**TINY_CHATGLM, "padded_vocab_size": 512}
    source = save_original(tmp_path / "chatglm3", config, original_state_dict(config))
    train_sentencepiece(source / "tokenizer.model")
    (source / "tokenization_chatglm.py").write_text('role_special_tokens = ["<|system|>", "<|user|>", "<|assistant|>", "<|observation|>"]\n')
    return source


def logits(*argv: str) -> torch.Tensor:
    return base_logits(get_infer_args(list(argv))[0], IDS)


@pytest.mark.parametrize("method", list(METHODS))
def test_a_method_trains_on_a_chatglm_folder_and_exports_back(method, chatglm_dir, tmp_path):
    argv = train_argv(chatglm_dir, write_sft_data(tmp_path), tmp_path / "out", "--template", "chatglm3",
                      "--finetuning_type", method, "--learning_rate", "1e-2", *METHODS[method])  # fmt: skip
    out = run_train(argv)
    assert sorted(step_losses(out)) == [1, 2, 3, 4]
    base = logits("--model_name_or_path", str(chatglm_dir))
    if method == "freeze":
        tuned_args = ["--model_name_or_path", str(out)]
    else:
        tuned_args = ["--model_name_or_path", str(chatglm_dir), "--adapter_name_or_path", str(out)]
    tuned = logits(*tuned_args)
    assert (tuned - base).abs().max() > 1e-3
    exported = tmp_path / "exported"
    if method == "p_tuning":  # a prefix is served as an adapter, never merged
        assert main(["export", *tuned_args, "--out", str(exported), "--format", "chatglm"]) == 2
        return
    assert main(["export", *tuned_args, "--out", str(exported), "--format", "chatglm"]) == 0
    native_again = convert(exported, tmp_path / "native-again", "native", 10**9)
    torch.testing.assert_close(logits("--model_name_or_path", str(native_again)), tuned, atol=1e-5, rtol=1e-5)
