"""Training settings a dataset asks for in dataset_info.json (`defaults`): under the user's, per method, checked."""

import json

import pytest

from glmtune.data.registry import bundled_dir
from glmtune.errors import ConfigError
from glmtune.hparams.entry import get_estimate_args, get_train_args, write_train_config
from glmtune.methods import METHODS
from glmtune.train.dataset_defaults import (
    train_args_with_dataset_defaults,
    with_dataset_defaults,
)


def registry(folder, **entries):
    """A dataset_info.json in `folder` whose entries each read one small alpaca file."""
    (folder / "rows.json").write_text(json.dumps([{"instruction": "q", "output": "a"}]), encoding="utf-8")
    (folder / "dataset_info.json").write_text(
        json.dumps({name: {"file_name": "rows.json", **entry} for name, entry in entries.items()}), encoding="utf-8"
    )
    return ["--dataset_dir", str(folder), "--output_dir", str(folder / "out")]


MINE = {"defaults": {"num_train_epochs": 5, "lora": {"learning_rate": 0.002}, "full": {"learning_rate": 1e-5}}}


def test_a_dataset_asks_for_settings_per_method_and_the_users_win(tmp_path):
    where = registry(tmp_path, mine=MINE)
    args = train_args_with_dataset_defaults(["--dataset", "mine", *where])
    assert (args.training.num_train_epochs, args.training.learning_rate) == (5, 0.002)
    assert train_args_with_dataset_defaults(["--dataset", "mine", "--finetuning_type", "full", *where]).training.learning_rate == 1e-5
    freeze = train_args_with_dataset_defaults(["--dataset", "mine", "--finetuning_type", "freeze", *where]).training
    assert (freeze.learning_rate, freeze.num_train_epochs) == (METHODS["freeze"].learning_rate, 5)
    flagged = train_args_with_dataset_defaults(["--dataset", "mine", "--learning_rate", "1e-4", *where]).training
    assert (flagged.learning_rate, flagged.num_train_epochs) == (1e-4, 5)
    (tmp_path / "run.yaml").write_text("num_train_epochs: 2\n", encoding="utf-8")
    assert train_args_with_dataset_defaults([str(tmp_path / "run.yaml"), "--dataset", "mine", *where]).training.num_train_epochs == 2


def test_the_saved_config_records_what_the_dataset_asked_for(tmp_path):
    args = train_args_with_dataset_defaults(["--dataset", "mine", *registry(tmp_path, mine=MINE)])
    reparsed = get_train_args([str(write_train_config(args))])
    assert (reparsed.training.learning_rate, reparsed.training.num_train_epochs) == (0.002, 5)


def test_a_dataset_without_defaults_changes_nothing(tmp_path):
    where = registry(tmp_path, plain={})
    assert train_args_with_dataset_defaults(["--dataset", "plain", *where]).training == get_train_args(["--dataset", "plain", *where]).training


def test_mixed_datasets_must_agree_on_what_they_both_ask_for(tmp_path):
    other = {"defaults": {"lora": {"learning_rate": 0.001}}}
    where = registry(tmp_path, mine=MINE, other=other, same={"defaults": {"num_train_epochs": 5}}, plain={})
    with pytest.raises(ConfigError, match=r"datasets 'mine' and 'other' ask for different learning_rate \(0.002, 0.001\).*set learning_rate yourself"):
        train_args_with_dataset_defaults(["--dataset", "mine,other", *where])
    assert train_args_with_dataset_defaults(["--dataset", "mine,other", "--learning_rate", "3e-4", *where]).training.learning_rate == 3e-4
    args = train_args_with_dataset_defaults(["--dataset", "plain,mine,same", *where])
    assert (args.training.learning_rate, args.training.num_train_epochs) == (0.002, 5)


def test_a_setting_of_another_stage_waits_for_that_stage(tmp_path):
    where = registry(tmp_path, mine={"defaults": {"pref_beta": 0.3, "replay": 1}})
    sft = train_args_with_dataset_defaults(["--dataset", "mine", *where])
    assert sft.data.replay == 1 and not any(hasattr(own, "pref_beta") for own in sft.stage_settings)
    dpo = train_args_with_dataset_defaults(["--stage", "dpo", "--dataset", "mine", *where])
    assert dpo.data.replay == 0 and [own.pref_beta for own in dpo.stage_settings if hasattr(own, "pref_beta")] == [0.3]


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"defaults": {"learning_rat": 0.1}}, r"dataset 'mine': defaults: unknown training setting 'learning_rat'.*learning_rate"),
        ({"defaults": [1]}, r"dataset 'mine': defaults must be an object of training settings"),
        ({"defaults": {"lora": 0.1}}, r"dataset 'mine': defaults: lora must be an object of settings for that method"),
        ({"defaults": {"full": {"learning_rat": 1e-5}}}, r"dataset 'mine': defaults: unknown training setting 'learning_rat'"),
        ({"defaults": {"learning_rate": "lots"}}, r"(?s)dataset 'mine' asks for learning_rate=lots: .*invalid float value: 'lots'"),
        ({"defaults": {"num_train_epochs": True}}, r"(?s)dataset 'mine' asks for num_train_epochs=True: .*invalid float value"),
    ],
)
def test_bad_defaults_name_the_file_the_dataset_and_the_setting(entry, problem, tmp_path):
    where = registry(tmp_path, mine=entry)
    with pytest.raises(ConfigError, match=problem) as raised:
        train_args_with_dataset_defaults(["--dataset", "mine", *where])
    assert str(tmp_path / "dataset_info.json") in str(raised.value)


def test_the_bundled_identity_set_asks_for_its_own_rate_with_lora_only(tmp_path):
    asked = json.loads((bundled_dir() / "dataset_info.json").read_text(encoding="utf-8"))["identity"]["defaults"]
    out = ["--dataset", "identity", "--output_dir", str(tmp_path)]
    assert train_args_with_dataset_defaults(out).training.learning_rate == asked["lora"]["learning_rate"] != METHODS["lora"].learning_rate
    full = train_args_with_dataset_defaults([*out, "--finetuning_type", "full"])
    assert full.training.learning_rate == METHODS["full"].learning_rate and full.data.replay == asked["replay"]


def test_the_estimate_sizes_the_run_the_dataset_asks_for(tmp_path):
    where = registry(tmp_path, mine={"defaults": {"per_device_train_batch_size": 16}})
    request = with_dataset_defaults(["--dataset", "mine", *where], get_estimate_args, lambda parsed: parsed.train)
    assert request.train.training.per_device_train_batch_size == 16
