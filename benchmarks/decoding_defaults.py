"""Decoding defaults (issue 15, item 4): do sampled answers with the default settings stay right?

20 simple English questions with one-word answers that the default model gets right when decoding
greedily (six of a first 20 it does not know, e.g. the capitals of Italy and Spain, were replaced:
the figure measures decoding, not knowledge), each answered `--samples` times (default 10)
by the default model through ChatModel with the settings `glmtune chat` uses when given no
decoding flag: the model's generation_config, then glmtune's fallback. An answer counts when an
accepted alias appears in it as a whole word (eval.qa's matching). `--old` measures ChatGLM
Efficient Tuning's settings (temperature 0.95, top_p 0.7, top_k 50) for comparison; any other
flag (`--temperature 0.5`, ...) is passed to the settings parser as `glmtune chat` would take it.
Not part of the test suite. Run:
flock /tmp/glmtune-cpu.lock .venv/bin/python benchmarks/decoding_defaults.py [--old] [--samples 10] [--seed 0]
"""

import argparse
import os
import subprocess
import time

import torch

from glmtune.chat.chat_model import ChatModel
from glmtune.eval.qa import contains_alias
from glmtune.hparams.entry import get_infer_args

QUESTIONS: list[tuple[str, tuple[str, ...]]] = [
    ("What is the capital of France?", ("Paris",)),
    ("What is the capital of Japan?", ("Tokyo",)),
    ("What is the capital of China?", ("Beijing",)),
    ("What is the capital of Germany?", ("Berlin",)),
    ("What is the capital of England?", ("London",)),
    ("What is the capital of Russia?", ("Moscow",)),
    ("Which planet is known as the Red Planet?", ("Mars",)),
    ("What is the capital of Canada?", ("Ottawa",)),
    ("What is the capital of Egypt?", ("Cairo",)),
    ("What color is the sky on a clear day?", ("blue",)),
    ("What is the chemical symbol for water?", ("H2O",)),
    ("How many days are there in a week?", ("seven", "7")),
    ("How many legs does a spider have?", ("eight", "8")),
    ("What is the largest ocean on Earth?", ("Pacific",)),
    ("Who wrote Romeo and Juliet?", ("Shakespeare",)),
    ("How many hours are there in a day?", ("24", "twenty-four", "twenty four")),
    ("What gas do plants absorb from the air?", ("carbon dioxide", "CO2")),
    ("What is the opposite of hot?", ("cold",)),
    ("Which animal says meow?", ("cat",)),
    ("What star is at the center of our solar system?", ("Sun",)),
]
OLD_DEFAULTS = ["--do_sample", "true", "--temperature", "0.95", "--top_p", "0.7", "--top_k", "50", "--repetition_penalty", "1.0"]


def machine() -> str:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
    model_name = next((line.split(":", 1)[1].strip() for line in lscpu if line.startswith("Model name")), "unknown")
    return f"{model_name}, nproc {os.cpu_count()}, torch threads {torch.get_num_threads()}"


def measure(chat_model: ChatModel, samples: int) -> tuple[int, list[str]]:
    """Correct answers out of len(QUESTIONS) * samples, and one wrong answer per question that had any."""
    correct, wrong = 0, []
    for question, aliases in QUESTIONS:
        replies = chat_model.batch_chat([[{"role": "user", "content": question}]] * samples)
        hits = [contains_alias(reply.text, aliases) for reply in replies]
        correct += sum(hits)
        misses = [reply.text for reply, hit in zip(replies, hits) if not hit]
        print(f"{sum(hits):2d}/{samples}  {question}", flush=True)
        if misses:
            wrong.append(f"{question} -> {misses[0][:160]!r}")
    return correct, wrong


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", action="store_true", help="ChatGLM Efficient Tuning's settings instead of the defaults")
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    options, extra = parser.parse_known_args()
    torch.manual_seed(options.seed)
    argv = ["--template", "smollm2", *(OLD_DEFAULTS if options.old else []), *extra]
    chat_model = ChatModel.from_args(*get_infer_args(argv))
    print(f"settings: {chat_model.generating_args}", flush=True)
    start = time.perf_counter()
    correct, wrong = measure(chat_model, options.samples)
    total = len(QUESTIONS) * options.samples
    print("\n".join(["first wrong answer per question:", *wrong]))
    print(f"{machine()}; {time.perf_counter() - start:.0f} s")
    print(f"correct: {correct}/{total} = {100 * correct / total:.1f}%")


if __name__ == "__main__":
    main()
