"""What the command line prints: glmtune's INFO lines, other libraries' warnings, no bitsandbytes noise without quantization.

Each test runs in a fresh interpreter: what is imported, and what is logged at import time,
depends on everything the process imported before.
"""

import subprocess
import sys
from pathlib import Path

from tiny_models import make_lora_adapter

from glmtune.logs import UNUSED_BNB_KERNEL_WARNINGS


def run_python(code: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def emit_sample_records(quantized: bool) -> str:
    return run_python(
        "import logging; from glmtune.logs import UNUSED_BNB_KERNEL_WARNINGS, configure_logging\n"
        f"configure_logging(quantized={quantized})\n"
        "logging.getLogger('glmtune.model.export').info('exported a merged model to OUT')\n"
        "logging.getLogger('some_library').info('library chatter')\n"
        "for logger, message in UNUSED_BNB_KERNEL_WARNINGS.items():\n"
        "    logging.getLogger(logger).warning(message + ': the rest of the message')\n"
        "    logging.getLogger(logger).warning('another warning of ' + logger)\n"
    ).stderr


def test_glmtune_info_shows_library_info_does_not():
    err = emit_sample_records(quantized=False)
    assert "INFO glmtune.model.export: exported a merged model to OUT" in err
    assert "library chatter" not in err


def test_the_bitsandbytes_kernel_warnings_show_only_when_quantizing():
    plain, quantized = emit_sample_records(quantized=False), emit_sample_records(quantized=True)
    for logger, message in UNUSED_BNB_KERNEL_WARNINGS.items():
        assert message not in plain and f"another warning of {logger}" in plain
        assert message in quantized


def test_lora_setup_without_quantization_prints_no_bitsandbytes_warning(tiny_llama_dir: Path):
    """peft imports bitsandbytes whenever it is installed; the CLI's logging keeps its CPU-kernel warning quiet."""
    result = run_python(
        "from glmtune.logs import configure_logging; configure_logging(quantized=False)\n"
        "from glmtune.hparams import FinetuningArguments, ModelArguments\n"
        "from glmtune.model.finetuning import prepare_for_training\n"
        "from glmtune.model.loader import load_model\n"
        f"model_args = ModelArguments(model_name_or_path={str(tiny_llama_dir)!r})\n"
        "model = load_model(model_args, for_training=True)\n"
        "prepare_for_training(model, model_args, FinetuningArguments(finetuning_type='lora'))\n"
    )
    assert "bitsandbytes" not in result.stderr and "gemm_4bit" not in result.stderr
    assert "INFO glmtune.model.finetuning: trainable parameters:" in result.stderr


def test_loading_a_model_without_adapters_imports_neither_peft_nor_bitsandbytes(tiny_llama_dir: Path):
    result = run_python(
        "import sys\n"
        "from glmtune.chat.chat_model import ChatModel\n"
        "from glmtune.hparams import DataArguments, GeneratingArguments, ModelArguments\n"
        f"chat = ChatModel.from_args(ModelArguments(model_name_or_path={str(tiny_llama_dir)!r}), "
        "DataArguments(template='qwen'), GeneratingArguments(max_new_tokens=2))\n"
        "chat.chat([{'role': 'user', 'content': 'hi'}])\n"
        "print(sorted(m for m in ('peft', 'bitsandbytes') if m in sys.modules))"
    )
    assert result.stdout.strip().endswith("[]")


def test_export_confirms_at_info_without_bitsandbytes_noise(tiny_llama_dir: Path, tmp_path: Path):
    make_lora_adapter(tiny_llama_dir, tmp_path / "adapter", seed=1)
    out = tmp_path / "merged"
    result = subprocess.run(
        [sys.executable, "-m", "glmtune", "export", "--model", str(tiny_llama_dir), "--adapter", str(tmp_path / "adapter"),
         "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"INFO glmtune.model.export: exported a merged model to {out}" in result.stderr
    assert "bitsandbytes" not in result.stderr
