"""Generation throughput (issue 5): batched vs one-by-one predict-with-generate on the default model.

Both runs go through `glmtune.eval.predict.generate_predictions` (ChatModel.batch_chat, left
padding, prompts of similar length batched together), greedy, on the first N rows of
../shared's alpaca_en_demo.json, template smollm2: once with batch size 1, once with the
batch size asked. Reported: samples/s, generated tokens/s, the ratio, and how many batched
answers equal the one-by-one answers. Torch runs on --threads threads (default 1): on a CPU
shared with other work, OpenMP threads spin-waiting for a busy core made a 40-token forward
pass 16x slower with 2 threads than with 1 here. Not part of the test suite.
Run: .venv/bin/python benchmarks/generation.py [--samples 32 --batch-size 8 --max-new-tokens 64 --threads 1]
"""

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path

DATA_FILE = Path(__file__).resolve().parents[2] / "shared" / "data" / "llama_factory" / "alpaca_en_demo.json"


@dataclass
class Timing:
    seconds: float
    answers: list[str]
    completion_tokens: int

    def samples_per_second(self) -> float:
        return len(self.answers) / self.seconds


def load_chat_model(max_new_tokens: int):
    from glmtune.chat.chat_model import ChatModel
    from glmtune.hparams import DataArguments, GeneratingArguments, ModelArguments

    return ChatModel.from_args(
        ModelArguments(), DataArguments(template="smollm2"), GeneratingArguments(do_sample=False, max_new_tokens=max_new_tokens)
    )


def load_rows(samples: int) -> list:
    from glmtune.eval.runner import held_out_examples
    from glmtune.hparams import DataArguments

    return held_out_examples(DataArguments(dataset=str(DATA_FILE), template="smollm2", max_samples=samples), seed=42)


def timed(chat_model, rows: list, batch_size: int) -> Timing:
    from glmtune.eval.predict import generate_predictions

    start = time.perf_counter()
    predictions = generate_predictions(chat_model, rows, batch_size)
    seconds = time.perf_counter() - start
    tokens = sum(len(chat_model.token_ids_of(prediction.predict)) for prediction in predictions)
    return Timing(seconds, [prediction.predict for prediction in predictions], tokens)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch compute threads")
    options = parser.parse_args()
    import torch

    torch.set_num_threads(options.threads)

    chat_model = load_chat_model(options.max_new_tokens)
    rows = load_rows(options.samples)
    print(f"{len(rows)} prompts, greedy, max_new_tokens {options.max_new_tokens}, {torch.get_num_threads()} threads")
    print(f"load before: {os.getloadavg()}")
    timed(chat_model, rows[: options.batch_size], options.batch_size)  # warm-up: first-call allocations
    single = timed(chat_model, rows, 1)
    batched = timed(chat_model, rows, options.batch_size)
    print(f"load after: {os.getloadavg()}")
    for name, timing in (("one by one", single), (f"batch {options.batch_size}", batched)):
        print(
            f"{name:>10}: {timing.seconds:7.1f} s, {timing.samples_per_second():.3f} samples/s, "
            f"{timing.completion_tokens / timing.seconds:.1f} generated tokens/s (decoded answers)"
        )
    same = sum(a == b for a, b in zip(single.answers, batched.answers))
    print(f"batched / one by one samples/s: {batched.samples_per_second() / single.samples_per_second():.2f}x")
    print(f"batched answers equal to one-by-one answers: {same}/{len(rows)}")


if __name__ == "__main__":
    main()
