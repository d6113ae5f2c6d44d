"""`glmtune chat`: streaming multi-turn chat in a terminal, scriptable through piped stdin."""

import sys
import time
from collections.abc import Sequence
from typing import TextIO

from glmtune.chat.chat_model import ChatModel
from glmtune.data.schema import Message

CLEAR_COMMANDS = frozenset({"clear"})
EXIT_COMMANDS = frozenset({"exit", "stop", "quit"})


def read_line(stdin: TextIO, stdout: TextIO) -> str | None:
    """Prompt for one line; echo piped input so a scripted transcript reads like a typed one."""
    stdout.write("\nUser: ")
    stdout.flush()
    line = stdin.readline()
    if not line:
        return None
    if not stdin.isatty():
        stdout.write(line if line.endswith("\n") else line + "\n")
    return line.strip()


def chat_loop(chat_model: ChatModel, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> None:
    history: list[Message] = []
    stdout.write("glmtune chat: type `clear` to forget the conversation, `exit` to quit.\n")
    while True:
        try:
            query = read_line(stdin, stdout)
        except UnicodeDecodeError:
            stdout.write("Could not decode that input: set the terminal encoding to UTF-8.\n")
            continue
        except KeyboardInterrupt:
            query = None
        if query is None or query.lower() in EXIT_COMMANDS:
            stdout.write("\n")
            return
        if query.lower() in CLEAR_COMMANDS:
            history = []
            stdout.write("History cleared.\n")
            continue
        if not query:
            continue
        history.append({"role": "user", "content": query})
        answer = answer_streaming(chat_model, history, stdout)
        history.append({"role": "assistant", "content": answer})


def answer_streaming(chat_model: ChatModel, history: list[Message], stdout: TextIO) -> str:
    """Print the answer as it is generated, then its time and speed; Ctrl-C cuts it short."""
    stdout.write("Assistant: ")
    stdout.flush()
    started = time.perf_counter()
    stream = chat_model.stream_chat(history)
    pieces = []
    try:
        for piece in stream:
            pieces.append(piece)
            stdout.write(piece)
            stdout.flush()
    except KeyboardInterrupt:
        stream.close()
        stdout.write(" [interrupted]")
    seconds = time.perf_counter() - started
    rate = stream.completion_tokens / seconds if seconds > 0 else 0.0
    stdout.write(f"\n[{seconds:.2f} s, {stream.completion_tokens} tokens, {rate:.1f} tokens/s]\n")
    stdout.flush()
    return "".join(pieces)


def main(argv: Sequence[str]) -> int:
    from glmtune.hparams.entry import get_infer_args

    model_args, data_args, generating_args = get_infer_args(argv)
    chat_model = ChatModel.from_args(model_args, data_args, generating_args)
    chat_loop(chat_model)
    return 0
