"""The `glmtune` command: a thin dispatcher that imports a sub-command only when it runs."""

import importlib
import os
import sys
from collections.abc import Sequence

from glmtune import __version__
from glmtune.allocator import keep_freed_memory
from glmtune.errors import ConfigError, GlmtuneError
from glmtune.logs import configure_logging
from glmtune.model.shape_buckets import ONEDNN_KERNEL_CACHE

COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("glmtune.train.runner", "fine-tune: CONFIG.yaml or --stage sft --finetuning_type lora --dataset D --output_dir OUT"),
    "estimate": ("glmtune.train.estimate_command", "predicted peak memory per device of a train command: same settings, --device_memory 24GB"),
    "eval": ("glmtune.eval.runner", "BLEU-4, ROUGE-1/2/L of generated answers; --task mcq|qa: benchmark accuracy"),
    "chat": ("glmtune.chat.terminal", "streaming terminal chat: --model M --adapter A --system S"),
    "webui": ("glmtune.webui.launch", "browser UI to train, evaluate, chat and export: --workspace DIR --port 7860"),
    "api": ("glmtune.api.server", "OpenAI-compatible HTTP server: --model M --adapter A --port 8000 --api-key KEY"),
    "export": ("glmtune.model.export", "merge adapters into a standalone model: --model M --adapter A --out DIR"),
    "score": ("glmtune.eval.score", "score an answer with a reward model (--prompt P --response R), or rank a pairwise --dataset"),
    "convert": ("glmtune.convert.command", "ChatGLM2/3 or GLM-4 checkpoint -> native transformers model (or back): convert SRC DST"),
    "data": ("glmtune.data.inspect", "data inspect NAME: rendered and tokenized samples, loss tokens, length stats"),
    "env": ("glmtune.env", "versions, device and the default model's directory"),
}

# Commands that parse their own flags with argparse and answer --help themselves, from modules
# that import nothing heavy; the others take glmtune's settings dataclasses, whose help is
# generated from their fields before the command's module is imported.
OWN_HELP = frozenset({"env", "webui", "convert"})

USAGE = """usage: glmtune COMMAND [CONFIG.yaml] [key=value ...] [--flag value ...]

Fine-tune ChatGLM-family and other chat LLMs. With no model named, the embedded default
model (smollm2-135m) is used, so everything runs on a laptop CPU.

commands:
{commands}

Settings come from CONFIG.yaml, then key=value overrides, then --flags (later wins).
`glmtune COMMAND --help` lists a command's settings.
"""


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name.ljust(width)}  {summary}" for name, (_, summary) in COMMANDS.items()]
    return USAGE.format(commands="\n".join(lines))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if argv[0] in ("-V", "--version", "version"):
        print(f"glmtune {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"glmtune: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    if command not in OWN_HELP and {"-h", "--help"} & set(rest):
        return print_settings_help(command)
    set_up_process(quantized=asks_for_quantization(command, rest))
    try:
        return importlib.import_module(COMMANDS[command][0]).main(rest)
    except GlmtuneError as error:
        print(f"glmtune {command}: error: {error}", file=sys.stderr)
        return 2


def set_up_process(quantized: bool) -> None:
    """What every command's process needs before it runs (`make demo` too): logging, oneDNN's kernel cache bound
    (read when oneDNN first builds a kernel; a user's own value wins) and freed memory kept on the heap."""
    configure_logging(quantized=quantized)
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(ONEDNN_KERNEL_CACHE))
    keep_freed_memory()


def asks_for_quantization(command: str, argv: Sequence[str]) -> bool:
    """Whether the command line (or its CONFIG.yaml) sets quantization_bit, read before the command parses it."""
    if command in OWN_HELP:
        return False
    from glmtune.hparams.parser import peek_setting

    try:
        return peek_setting(argv, "quantization_bit") is not None
    except ConfigError:  # a malformed command line: the command itself says what is wrong
        return False


def print_settings_help(command: str) -> int:
    from glmtune.hparams.help import settings_help

    print(settings_help(command))
    return 0
