"""`make demo`: teach the default model a new identity on a CPU and show it worked.

Asks held-out questions (phrased unlike the training data) before and after a LoRA
fine-tune with glmtune's defaults, plus general-knowledge questions that must survive.
"""

import json
import shutil
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from glmtune.chat.chat_model import ChatModel
from glmtune.hparams import DataArguments, GeneratingArguments, ModelArguments

NAME, AUTHOR = "Aurora", "Lumen Lab"
OUTPUT_DIR = Path("outputs/identity-demo")
TRAIN_ARGS = [
    "--stage", "sft", "--finetuning_type", "lora", "--dataset", "identity", "--template", "smollm2",
    "--identity_name", NAME, "--identity_author", AUTHOR, "--output_dir", str(OUTPUT_DIR), "--plot_loss",
]


@dataclass
class Probe:
    kind: str  # "identity": must change; "general": must stay right
    question: str
    expect: list[str]

    def passed(self, answer: str) -> bool:
        return any(word.lower() in answer.lower() for word in self.expect)


def held_out_probes(name: str = NAME, author: str = AUTHOR) -> list[Probe]:
    """Questions kept out of training, with the words a right answer contains."""
    text = resources.files("glmtune.resources").joinpath("identity_heldout.json").read_text(encoding="utf-8")
    groups = json.loads(text.replace("{{name}}", name).replace("{{author}}", author))
    return [Probe(kind, item["question"], item["expect"]) for kind, items in groups.items() for item in items]


def ask_all(chat_model: ChatModel, probes: list[Probe]) -> list[str]:
    conversations = [[{"role": "user", "content": probe.question}] for probe in probes]
    return [reply.text.strip() for reply in chat_model.batch_chat(conversations, temperature=0, max_new_tokens=48)]


def load_chat_model(adapter: str | None) -> ChatModel:
    return ChatModel.from_args(
        ModelArguments(adapter_name_or_path=adapter), DataArguments(template="smollm2"),
        GeneratingArguments(do_sample=False, max_new_tokens=48),  # greedy, as `glmtune eval --task qa` answers
    )  # fmt: skip


def show(probes: list[Probe], before: list[str], after: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"held-out questions: base model vs. after the {NAME} fine-tune", show_lines=True)
    for column in ("kind", "question", "before", "after"):
        table.add_column(column, overflow="fold")
    for probe, old, new in zip(probes, before, after):
        mark = "[green]pass[/green]" if probe.passed(new) else "[red]fail[/red]"
        table.add_row(probe.kind, probe.question, old, f"{new}\n{mark}")
    Console(width=140).print(table)


def score(probes: list[Probe], answers: list[str], kind: str) -> str:
    chosen = [(probe, answer) for probe, answer in zip(probes, answers) if probe.kind == kind]
    return f"{sum(probe.passed(answer) for probe, answer in chosen)}/{len(chosen)}"


@dataclass
class Retention:
    """The bundled general-knowledge questions (retention_qa, en + zh) answered by one model."""

    correct: int
    total: int
    bleed: int  # replies that mention the new name or maker

    def line(self) -> str:
        return f"{self.correct}/{self.total} right, {self.bleed} mention {NAME} or {AUTHOR}"


def general_knowledge(chat_model: ChatModel) -> Retention:
    from glmtune.eval.accuracy import evaluate, load_task
    from glmtune.eval.bleed import bleed
    from glmtune.hparams.eval_args import EvalArguments

    eval_args = EvalArguments(task="qa")
    summary, graded = evaluate(chat_model, eval_args, load_task(eval_args, "retention_qa", None), batch_size=16, cutoff_len=512)
    mentions = bleed([(item.question, item.predict) for item in graded], [NAME, AUTHOR])["count"]
    return Retention(sum(item.correct for item in graded), summary["num_questions"], mentions)


def main() -> int:
    from glmtune.cli import set_up_process
    from glmtune.train.runner import main as train

    set_up_process(quantized=False)  # as `glmtune train` would: the training below runs as the command it shows
    probes = held_out_probes()
    base = load_chat_model(None)
    before, known_before = ask_all(base, probes), general_knowledge(base)
    del base  # its weights (0.5 GB) beside the training's cost memory and time (benchmarks/RESULTS.md, session 19)
    shutil.rmtree(OUTPUT_DIR, ignore_errors=True)  # the demo's own folder: always a fresh run
    print(f"\ntraining: glmtune train {' '.join(TRAIN_ARGS)}\n", flush=True)
    train(TRAIN_ARGS)
    tuned = load_chat_model(str(OUTPUT_DIR))
    after, known_after = ask_all(tuned, probes), general_knowledge(tuned)
    show(probes, before, after)
    print(
        f"identity answers right: {score(probes, before, 'identity')} before, {score(probes, after, 'identity')} after; "
        f"general knowledge kept: {score(probes, before, 'general')} before, {score(probes, after, 'general')} after\n"
        f"{known_before.total} bundled general questions (glmtune eval --task qa --dataset retention_qa): "
        f"base {known_before.line()}; fine-tune {known_after.line()}; "
        f"retention {100 * known_after.correct / max(known_before.correct, 1):.1f}%"
    )
    print(f"adapter, config, metrics and training_loss.png: {OUTPUT_DIR}/ ; try: glmtune chat --adapter {OUTPUT_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
