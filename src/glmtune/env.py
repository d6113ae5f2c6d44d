"""`glmtune env`: what a bug report needs, from installed metadata without importing the libraries."""

import platform
from collections.abc import Sequence
from importlib import metadata

PACKAGES = ("glmtune", "torch", "transformers", "peft", "trl", "datasets", "accelerate", "tokenizers", "gguf")
OPTIONAL_PACKAGES = ("bitsandbytes", "deepspeed", "gradio", "fastapi")


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def describe_device() -> str:
    import torch

    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        bf16 = "bf16 supported" if torch.cuda.is_bf16_supported() else "no bf16"
        return f"cuda x{torch.cuda.device_count()} ({names}; {bf16})"
    return f"cpu ({torch.get_num_threads()} threads)"


def environment_report() -> list[tuple[str, str]]:
    from glmtune.default_model import default_model_dir
    from glmtune.paths import is_complete

    rows = [("python", platform.python_version()), ("platform", platform.platform())]
    rows += [(name, package_version(name) or "not installed") for name in PACKAGES]
    rows += [(name, version) for name in OPTIONAL_PACKAGES if (version := package_version(name))]
    rows.append(("device", describe_device()))
    directory = default_model_dir()
    state = "converted" if is_complete(directory) else "not converted yet (first use converts it)"
    rows.append(("default model", f"{directory} [{state}]"))
    return rows


def main(argv: Sequence[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="glmtune env", description="Show versions, device and model cache.")
    parser.add_argument(
        "--default-model-path", action="store_true", help="print only the default model's directory, converting it if needed"
    )
    options = parser.parse_args(list(argv))
    if options.default_model_path:
        from glmtune.default_model import ensure_default_model

        print(ensure_default_model())
        return 0
    for name, value in environment_report():
        print(f"- {name}: {value}")
    return 0
