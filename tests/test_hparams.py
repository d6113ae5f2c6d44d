import pytest
import yaml

from glmtune.errors import ConfigError
from glmtune.hparams.entry import get_infer_args, get_train_args, train_settings_yaml


def write_yaml(tmp_path, settings):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return str(path)


def test_yaml_then_key_value_then_flags(tmp_path):
    config = write_yaml(tmp_path, {"lora_rank": 4, "learning_rate": 1e-4, "dataset": ["a", "b"], "output_dir": "o"})
    model, data, training, finetuning, _ = get_train_args(
        [config, "lora_rank=16", "template=qwen", "--lora_rank", "32", "--do_train"]
    ).all()
    assert finetuning.lora_rank == 32  # flag beats key=value beats YAML
    assert data.template == "qwen"
    assert data.dataset == "a,b"  # YAML lists join into comma-separated names
    assert training.learning_rate == pytest.approx(1e-4)
    assert training.do_train is True


def test_key_value_strings_take_field_types(tmp_path):
    _, data, training, finetuning, generating = get_train_args(
        ["output_dir=o", "dataset=d", "lora_dropout=0.1", "max_samples=7", "plot_loss=true", "max_new_tokens=9"]
    ).all()
    assert finetuning.lora_dropout == pytest.approx(0.1)
    assert data.max_samples == 7
    assert finetuning.plot_loss is True
    assert generating.max_new_tokens == 9


def test_chatglm_efficient_tuning_command_line_is_accepted():
    """Flags exactly as ChatGLM Efficient Tuning's README writes them."""
    model, data, training, finetuning, _ = get_train_args(
        "--stage sft --model_name_or_path path_to_model --do_train --dataset alpaca_gpt4_zh "
        "--dataset_dir data --finetuning_type lora --output_dir out --overwrite_cache "
        "--per_device_train_batch_size 4 --gradient_accumulation_steps 4 --lr_scheduler_type cosine "
        "--logging_steps 10 --save_steps 1000 --learning_rate 5e-5 --num_train_epochs 3.0 "
        "--plot_loss --use_v2 --checkpoint_dir ckpt1,ckpt2 --dev_ratio 0.01 --source_prefix hi "
        "--max_source_length 256 --max_target_length 128".split()
    ).all()
    assert model.model_name_or_path == "path_to_model"
    assert model.adapter_name_or_path == "ckpt1,ckpt2"
    assert data.val_size == pytest.approx(0.01)
    assert data.default_system == "hi"
    assert data.cutoff_len == 384
    assert finetuning.plot_loss and training.per_device_train_batch_size == 4
    assert training.learning_rate == pytest.approx(5e-5)


def test_use_v2_with_explicit_value_is_ignored():
    model, _, _ = get_infer_args(["--use_v2", "true", "--model", "m"])
    assert model.model_name_or_path == "m"


def test_unknown_setting_suggests_close_name(tmp_path):
    with pytest.raises(ConfigError, match="did you mean lora_rank"):
        get_train_args([write_yaml(tmp_path, {"lora_rnak": 8})])
    with pytest.raises(ConfigError, match="did you mean finetuning_type"):
        get_train_args(["--finetunig_type", "lora"])


def test_literal_values_from_yaml_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="finetuning_type='lroa'.*did you mean lora"):
        get_train_args([write_yaml(tmp_path, {"finetuning_type": "lroa"})])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--quantization_bit", "4", "--finetuning_type", "full"], "use finetuning_type=lora"),
        (["--quantization_bit", "3"], "use 4 or 8"),
        (["--finetuning_type", "freeze", "--adapter_name_or_path", "a"], "merge them first"),
        (["--finetuning_type", "p_tuning", "--adapter_name_or_path", "a,b"], "single adapter"),
        (["--stage", "rlhf"], "argument --stage: invalid choice: 'rlhf'"),
        (["--fp16", "--bf16"], "choose one|bf16"),
        (["--dataset", ""], "do_train needs dataset"),
        (["--lora_rank", "0"], "lora_rank=0"),
        (["--cutoff_len", "0"], "cutoff_len=0"),
        (["--val_size", "1.5"], "val_size=1.5"),
        (["--top_p", "0"], "top_p=0.0"),
        (["--micro_batch_tokens", "-1"], "micro_batch_tokens=-1"),
    ],
)
def test_impossible_combinations_are_rejected_before_loading(argv, message):
    with pytest.raises(ConfigError, match=message):
        get_train_args(["--output_dir", "o", "--dataset", "d", *argv])


def test_all_problems_are_reported_together():
    with pytest.raises(ConfigError) as error:
        get_train_args(["--output_dir", "o", "--dataset", "d", "--lora_rank", "0", "--cutoff_len", "0"])
    assert "lora_rank" in str(error.value) and "cutoff_len" in str(error.value)


def test_resolved_config_round_trips_through_yaml(tmp_path):
    first = get_train_args(["--output_dir", "o", "--lora_rank", "4", "--learning_rate", "3e-4", "--dataset", "x,y"])
    path = tmp_path / "resolved.yaml"
    path.write_text(train_settings_yaml(first), encoding="utf-8")
    saved = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert saved["lora_rank"] == 4 and saved["learning_rate"] == pytest.approx(3e-4) and saved["output_dir"] == "o"
    second = get_train_args([str(path)])
    assert train_settings_yaml(second) == train_settings_yaml(first)


def test_bad_yaml_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("lora_rank: [8\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="broken.yaml"):
        get_train_args([str(path)])


def test_positional_after_flags_is_an_error():
    with pytest.raises(ConfigError):
        get_infer_args(["stray"])


def test_export_takes_chatglm_efficient_tuning_output_dir():
    from glmtune.hparams.entry import get_export_args

    _, _, export_args = get_export_args(["--checkpoint_dir", "c", "--output_dir", "merged"])
    assert export_args.export_dir == "merged"


@pytest.mark.parametrize(("argv", "trains"), [([], True), (["--do_eval"], False), (["--do_predict", "true"], False),
                                             (["--do_eval", "--do_train"], True)])  # fmt: skip
def test_evaluation_flags_alone_mean_no_training(argv, trains):
    args = get_train_args(["--dataset", "d", "--output_dir", "o", "--val_size", "0.2", "--predict_with_generate", *argv])
    assert args.training.do_train is trains


def test_an_adapter_directory_with_a_comma_in_its_name_is_named_in_the_error(tmp_path):
    adapter = tmp_path / "grpo_reward_funcs-a,b"
    adapter.mkdir()
    with pytest.raises(ConfigError, match=r"a comma separates adapters, and this directory has one in its name"):
        get_infer_args(["--adapter_name_or_path", str(adapter)])
