"""Does DPO with glmtune's defaults move the default model toward chosen answers on pairs it never saw?

Trains `glmtune train --stage dpo --dataset preference --template smollm2` (LoRA, every setting
at its default) in a subprocess, then measures, for each held-out pair of
benchmarks/data/preference_heldout.json (24 pairs of the bundled set's kinds, en + zh, written for
this benchmark), the log-likelihood margin: log p(chosen | prompt) - log p(rejected | prompt),
summed over the answer tokens, laid out by the same template. Reported before (base model) and
after (with the DPO adapter): the mean margin and how many pairs gained.
Run: .venv/bin/python benchmarks/dpo_quality.py [--output-dir DIR] [--setting key=value ...]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HELD_OUT = Path(__file__).with_name("data") / "preference_heldout.json"
TEMPLATE = "smollm2"


def answer_logps(model_args, pairs: list[dict]) -> list[tuple[float, float]]:
    """(log p(chosen), log p(rejected)) of each pair's answers after its prompt."""
    import torch

    from glmtune.data.templates import encode_turns, get_template
    from glmtune.data.tokenizer import load_tokenizer
    from glmtune.model.loader import load_model

    model, tokenizer, template = load_model(model_args), load_tokenizer(model_args), get_template(TEMPLATE)

    def logp(prompt: str, answer: str) -> float:
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
        [(prompt_ids, answer_ids)] = encode_turns(template, tokenizer, messages)
        ids = torch.tensor([prompt_ids + answer_ids])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, :-1].float()
        picked = torch.log_softmax(logits, dim=-1).gather(1, ids[0, 1:, None])[:, 0]
        return float(picked[len(prompt_ids) - 1 :].sum())

    return [(logp(pair["instruction"], pair["chosen"]), logp(pair["instruction"], pair["rejected"])) for pair in pairs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", help="where the DPO adapter is written (default: a temporary folder)")
    parser.add_argument("--setting", action="append", default=[], help="an extra glmtune setting, key=value")
    options = parser.parse_args()
    from glmtune.hparams import ModelArguments

    with tempfile.TemporaryDirectory(prefix="glmtune-dpo-") as scratch:
        output_dir = Path(options.output_dir or Path(scratch) / "dpo")
        command = [sys.executable, "-m", "glmtune", "train", "--stage", "dpo", "--dataset", "preference",
                   "--template", TEMPLATE, "--output_dir", str(output_dir),
                   *(f"--{item}" for setting in options.setting for item in setting.split("=", 1))]  # fmt: skip
        start = time.perf_counter()
        subprocess.run(command, check=True)
        print(f"command: {' '.join(command[2:])}\ntraining wall time {time.perf_counter() - start:.1f} s")
        pairs = json.loads(HELD_OUT.read_text(encoding="utf-8"))
        before = answer_logps(ModelArguments(), pairs)
        after = answer_logps(ModelArguments(adapter_name_or_path=str(output_dir)), pairs)
    margins_before = [chosen - rejected for chosen, rejected in before]
    margins_after = [chosen - rejected for chosen, rejected in after]
    gained = sum(new > old for old, new in zip(margins_before, margins_after))
    print(f"held-out pairs: {len(pairs)} ({HELD_OUT.name})")
    print(f"mean margin (log p chosen - log p rejected): before {sum(margins_before) / len(pairs):.3f}, "
          f"after {sum(margins_after) / len(pairs):.3f}")  # fmt: skip
    print(f"pairs whose margin grew: {gained} of {len(pairs)}; chosen preferred (margin > 0): "
          f"before {sum(m > 0 for m in margins_before)}, after {sum(m > 0 for m in margins_after)}")  # fmt: skip
    print(f"mean log p(chosen): before {sum(c for c, _ in before) / len(pairs):.3f}, after {sum(c for c, _ in after) / len(pairs):.3f}")


if __name__ == "__main__":
    main()
