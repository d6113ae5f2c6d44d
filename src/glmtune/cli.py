"""The `glmtune` command: a thin dispatcher that imports a sub-command only when it runs."""

import importlib
import logging
import sys
from collections.abc import Sequence

from glmtune import __version__
from glmtune.errors import GlmtuneError

COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("glmtune.train.runner", "fine-tune: CONFIG.yaml or --stage sft --finetuning_type lora --dataset D --output_dir OUT"),
    "eval": ("glmtune.eval.runner", "predict with generate on a dataset: BLEU-4, ROUGE-1/2/L, generated_predictions.jsonl"),
    "chat": ("glmtune.chat.terminal", "streaming terminal chat: --model M --adapter A --system S"),
    "webui": ("glmtune.webui.app", "browser UI to train, evaluate, chat and export: --workspace DIR --port 7860"),
    "api": ("glmtune.api.server", "OpenAI-compatible HTTP server: --model M --adapter A --port 8000 --api-key KEY"),
    "export": ("glmtune.model.export", "merge adapters into a standalone model: --model M --adapter A --out DIR"),
    "data": ("glmtune.data.inspect", "data inspect NAME: rendered and tokenized samples, loss tokens, length stats"),
    "env": ("glmtune.env", "versions, device and the default model's directory"),
}

# Commands that parse their own flags with argparse and answer --help themselves; the others
# take glmtune's settings dataclasses, whose help is generated from their fields.
OWN_HELP = frozenset({"env", "webui"})

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
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    module = importlib.import_module(COMMANDS[command][0])
    if command not in OWN_HELP and {"-h", "--help"} & set(rest):
        return print_settings_help(command)
    try:
        return module.main(rest)
    except GlmtuneError as error:
        print(f"glmtune {command}: error: {error}", file=sys.stderr)
        return 2


def print_settings_help(command: str) -> int:
    from glmtune.hparams.help import settings_help

    print(settings_help(command))
    return 0
