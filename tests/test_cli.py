import os
import subprocess
import sys

import pytest

from glmtune.cli import COMMANDS, asks_for_quantization, main
from glmtune.model.shape_buckets import ONEDNN_KERNEL_CACHE


def run_python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def test_help_imports_nothing_heavy():
    out = run_python(
        "import sys; from glmtune.cli import main; main(['--help']); "
        "print(sorted(m for m in ('torch', 'transformers', 'peft', 'datasets') if m in sys.modules))"
    )
    assert "commands:" in out and "chat" in out
    assert out.strip().endswith("[]")


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_command_help_imports_no_framework(command):
    """`glmtune COMMAND --help` answers from settings classes or an argparse parser, before the command's module."""
    out = run_python(
        "import sys; from glmtune.cli import main\n"
        f"try:\n    status = main([{command!r}, '--help'])\n"
        "except SystemExit as exit:\n    status = exit.code\n"
        "print('status', status, sorted(m for m in ('torch', 'transformers', 'gradio') if m in sys.modules))"
    )
    assert f"usage: glmtune {command}" in out
    assert out.strip().endswith("status 0 []")


def test_quantization_is_read_from_flags_settings_and_config_files(tmp_path):
    config = tmp_path / "qlora.yaml"
    config.write_text("quantization_bit: 4\n")
    assert asks_for_quantization("train", ["--quantization_bit", "4"])
    assert asks_for_quantization("chat", ["quantization_bit=8"])
    assert asks_for_quantization("train", [str(config), "--max_steps", "1"])
    assert not asks_for_quantization("train", ["--finetuning_type", "lora"])
    assert not asks_for_quantization("data", ["inspect", "identity"])  # not settings: the command reads it


def test_unknown_command_is_rejected(capsys):
    assert main(["trian"]) == 2
    assert "unknown command 'trian'" in capsys.readouterr().err


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("glmtune ")


def test_env_lists_versions_and_default_model_dir(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("GLMTUNE_HOME", str(tmp_path))
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    for name in ("python", "torch", "transformers", "peft", "trl", "datasets", "accelerate", "device"):
        assert f"- {name}: " in out
    assert str(tmp_path / "models") in out


def test_chat_help_lists_settings(capsys):
    assert main(["chat", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--model_name_or_path" in out and "--temperature" in out and "--checkpoint_dir" in out


def test_config_errors_are_one_message_not_a_traceback(capsys):
    assert main(["chat", "--temprature", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "temperature" in err and "Traceback" not in err


def test_webui_help_lists_its_own_flags(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["webui", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--workspace" in out and "--auth" in out and "--learning_rate" not in out


@pytest.mark.parametrize(("preset", "expected"), [(None, str(ONEDNN_KERNEL_CACHE)), ("512", "512")])
def test_onednn_kernel_cache_is_bounded_unless_the_user_chose(preset, expected, monkeypatch, capsys):
    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
    if preset:
        monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", preset)
    assert main(["env"]) == 0
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == expected
