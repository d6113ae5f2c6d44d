"""DeepSpeed and FSDP settings: the example configs, and the checks that run before any model loads.

DeepSpeed needs CUDA and FSDP needs GPUs, so on a CPU these tests go as far as glmtune's settings
go: a config is accepted up to the point where the engine itself would be needed.
"""

import json
from pathlib import Path

import pytest

from glmtune.errors import ConfigError
from glmtune.hparams import engines
from glmtune.hparams.engines import check_deepspeed
from glmtune.hparams.entry import get_train_args
from glmtune.precision import default_device

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "deepspeed"
CONFIGS = {"ds_z2_config.json": 2, "ds_z3_config.json": 3, "ds_z3_offload_config.json": 3}
TRAIN = ["--stage", "sft", "--dataset", "d", "--output_dir", "o"]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_example_configs_leave_batch_sizes_to_the_training_settings(name: str) -> None:
    config = json.loads((EXAMPLES / name).read_text(encoding="utf-8"))
    assert config["zero_optimization"]["stage"] == CONFIGS[name]
    # "auto": transformers fills these from the training arguments, so one file serves every run
    for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "gradient_clipping"):
        assert config[key] == "auto"
    assert config["bf16"]["enabled"] == config["fp16"]["enabled"] == "auto"
    offloaded = {part.get("device") for key, part in config["zero_optimization"].items() if key.startswith("offload_")}
    assert offloaded == ({"cpu"} if "offload" in name else set())


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_deepspeed_configs_pass_the_checks_where_deepspeed_is_installed(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engines, "deepspeed_installed", lambda: True)
    assert check_deepspeed(str(EXAMPLES / name)) == []


def test_without_deepspeed_the_flag_fails_before_parsing_naming_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engines, "deepspeed_installed", lambda: False)
    with pytest.raises(ConfigError) as raised:
        get_train_args([*TRAIN, "--deepspeed", str(EXAMPLES / "ds_z2_config.json")])
    problems = [line for line in str(raised.value).splitlines() if line.strip().startswith("- ")]
    assert len(problems) == 1 and "pip install deepspeed" in problems[0]  # the file itself was accepted


def test_a_missing_or_broken_deepspeed_config_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engines, "deepspeed_installed", lambda: True)
    broken = tmp_path / "ds.json"
    broken.write_text('{"zero_optimization": {"stage": 2,}}', encoding="utf-8")
    assert "not valid JSON" in check_deepspeed(str(broken))[0]
    assert "no such file" in check_deepspeed(str(tmp_path / "absent.json"))[0]


@pytest.mark.skipif(default_device() != "cpu", reason="FSDP runs where a GPU is present")
@pytest.mark.parametrize("how", ["flag", "accelerate launch"])
def test_fsdp_on_a_cpu_fails_instead_of_silently_running_ddp(how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    argv = list(TRAIN)
    if how == "flag":
        argv += ["--fsdp", "full_shard auto_wrap"]
    else:
        monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # what `accelerate launch --use_fsdp` sets
    with pytest.raises(ConfigError, match="fsdp needs GPUs"):
        get_train_args(argv)
