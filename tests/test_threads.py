"""`--threads N`: one setting of chat, eval, api and train, applied to torch as the command parses its settings."""

from collections.abc import Callable, Iterator

import pytest
import torch

from glmtune.errors import ConfigError
from glmtune.hparams.entry import (
    get_api_args,
    get_eval_args,
    get_infer_args,
    get_train_args,
)
from glmtune.hparams.help import settings_help

PARSERS: dict[str, tuple[Callable, list[str]]] = {
    "chat": (get_infer_args, []),
    "api": (get_api_args, []),
    "eval": (get_eval_args, ["--dataset", "d"]),
    "train": (get_train_args, ["--dataset", "d", "--output_dir", "o"]),
}


@pytest.fixture
def restore_threads() -> Iterator[int]:
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


@pytest.mark.parametrize("command", sorted(PARSERS))
def test_threads_take_effect_for_each_command(command, restore_threads):
    parse, required = PARSERS[command]
    wanted = 1 if restore_threads > 1 else 2  # a value other than the current one
    settings = parse([*required, "--threads", str(wanted)])
    model_args = settings.model if command == "train" else settings[0]
    assert model_args.threads == wanted
    assert torch.get_num_threads() == wanted
    assert "--threads" in settings_help(command)


def test_no_threads_setting_leaves_torch_default(restore_threads):
    get_infer_args([])
    assert torch.get_num_threads() == restore_threads


def test_threads_below_one_are_refused(restore_threads):
    with pytest.raises(ConfigError, match="threads=0"):
        get_infer_args(["--threads", "0"])
    assert torch.get_num_threads() == restore_threads
