"""What the multi-device engines (DeepSpeed, FSDP) need before a run starts, checked up front.

Without these checks a missing deepspeed package surfaces as a packaging traceback from inside
transformers' argument parsing, and FSDP asked for on a CPU is dropped without a word: accelerate
(1.15) turns FSDP on only for GPU-class devices and otherwise trains with DDP, where every
process holds the whole model, the memory FSDP was asked to save.
"""

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

from glmtune.precision import default_device


def deepspeed_installed() -> bool:
    return importlib.util.find_spec("deepspeed") is not None


def check_deepspeed(config: Any) -> list[str]:
    """A `--deepspeed` value: a readable JSON file (or an inline dict from YAML), and the package to run it."""
    if not config:
        return []
    problems = []
    if isinstance(config, str) and not config.lstrip().startswith("{"):
        path = Path(config).expanduser()
        if not path.is_file():
            problems.append(f"deepspeed={config}: no such file (see examples/deepspeed/ for ZeRO-2 and ZeRO-3 configs)")
        else:
            try:
                json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as error:
                problems.append(f"deepspeed={config}: not valid JSON ({error})")
    if not deepspeed_installed():
        problems.append(
            "deepspeed is set but the deepspeed package is not installed: `pip install deepspeed` "
            "(it needs CUDA GPUs), or drop --deepspeed to train with DDP"
        )
    return problems


def check_fsdp(training_args: Any) -> list[str]:
    """FSDP (from --fsdp or `accelerate launch --use_fsdp`) needs a GPU-class device."""
    asked = bool(training_args.fsdp) or os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    if asked and default_device() == "cpu":
        return [
            "fsdp needs GPUs: on a CPU accelerate would train with DDP instead (every process holding the whole "
            "model); drop --fsdp (torchrun then runs DDP) or run on GPUs"
        ]
    return []
