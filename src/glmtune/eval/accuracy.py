"""`glmtune eval --task mcq|qa`: accuracy per subject and overall, and with compare_base the retention.

Retention is the fine-tune's accuracy over the base model's, in percent: 100 means the fine-tune
kept everything the base model knew on this set. Both runs share one model in memory: the base is
evaluated first, then the adapters are attached to it (LoRA merged in place) for the fine-tune.
"""

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from glmtune.chat.chat_model import ChatModel
from glmtune.eval.benchmarks import LETTERS, load_mcq, load_qa
from glmtune.eval.bleed import bleed, identity_words
from glmtune.eval.choice import choose
from glmtune.eval.qa import answer_questions, contains_alias, exact_alias
from glmtune.hparams.eval_args import EvalArguments
from glmtune.paths import write_atomically


@dataclass(frozen=True)
class Graded:
    """One question's line in <task>_predictions.jsonl."""

    subject: str
    question: str
    label: str
    predict: str
    correct: bool
    exact: bool | None = None  # qa only: the reply is exactly an accepted answer


def first_per_subject(items: list[Any], limit: int | None) -> list[Any]:
    """max_samples applies per subject, so a quick run still covers every subject."""
    if limit is None:
        return items
    seen: dict[str, int] = {}
    kept = []
    for item in items:
        seen[item.subject] = seen.get(item.subject, 0) + 1
        if seen[item.subject] <= limit:
            kept.append(item)
    return kept


def load_task(eval_args: EvalArguments, dataset: str, max_samples: int | None) -> tuple[list[Any], dict[str, Any]]:
    """The questions (read before any model loads, so bad files fail fast) and, for mcq, the dev examples."""
    if eval_args.task == "mcq":
        questions, shots = load_mcq(dataset, eval_args.split, eval_args.n_shot)
        return first_per_subject([q for items in questions.values() for q in items], max_samples), shots
    return first_per_subject(load_qa(dataset), max_samples), {}


def grade(chat_model: ChatModel, eval_args: EvalArguments, questions: list[Any], shots: dict[str, Any], batch_size: int, cutoff_len: int) -> list[Graded]:
    if eval_args.task == "mcq":
        chosen = choose(chat_model, questions, shots, eval_args.scoring, batch_size, cutoff_len)
        return [
            Graded(q.subject, q.question, LETTERS[q.answer], LETTERS[pick], pick == q.answer)
            for q, pick in zip(questions, chosen)
        ]
    replies = answer_questions(chat_model, questions, batch_size)
    return [
        Graded(q.subject, q.question, " | ".join(q.aliases), reply, contains_alias(reply, q.aliases), exact_alias(reply, q.aliases))
        for q, reply in zip(questions, replies)
    ]


def percent(part: int, whole: int) -> float:
    return round(100 * part / whole, 2) if whole else 0.0


def summarise(graded: list[Graded], runtime: float) -> dict[str, Any]:
    """Accuracy over all questions, the mean of the subjects' accuracies, and each subject's."""
    subjects: dict[str, dict[str, Any]] = {}
    for item in graded:
        counts = subjects.setdefault(item.subject, {"correct": 0, "total": 0})
        counts["correct"] += item.correct
        counts["total"] += 1
    for counts in subjects.values():
        counts["accuracy"] = percent(counts["correct"], counts["total"])
    summary = {
        "accuracy": percent(sum(item.correct for item in graded), len(graded)),
        "subject_average": round(sum(c["accuracy"] for c in subjects.values()) / len(subjects), 2) if subjects else 0.0,
        "num_questions": len(graded),
        "runtime_seconds": round(runtime, 3),
        "subjects": subjects,
    }
    if graded and graded[0].exact is not None:
        summary["exact_match"] = percent(sum(bool(item.exact) for item in graded), len(graded))
    return summary


def retention(model: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """Fine-tune accuracy / base accuracy in percent, overall and per subject (None where the base scored 0)."""
    ratio = lambda ours, theirs: round(100 * ours / theirs, 2) if theirs else None  # noqa: E731
    return {
        "accuracy": ratio(model["accuracy"], base["accuracy"]),
        "subjects": {name: ratio(counts["accuracy"], base["subjects"][name]["accuracy"]) for name, counts in model["subjects"].items()},
    }


def table(results: dict[str, Any]) -> str:
    """The printed table: one row per subject and an overall row; base and retention columns with compare_base."""
    base = results.get("base")
    width = max([len(name) for name in results["subjects"]] + [len("all questions")])
    head = f"{'subject'.ljust(width)}  {'n':>5}  " + (f"{'base':>7}  {'tuned':>7}  {'retention':>9}" if base else f"{'accuracy':>8}")
    lines = [head, "-" * len(head)]
    rows = [(name, counts, base["subjects"][name] if base else None) for name, counts in results["subjects"].items()]
    rows.append(("all questions", {**results, "total": results["num_questions"]}, base))
    for name, counts, base_counts in rows:
        line = f"{name.ljust(width)}  {counts['total']:>5}  "
        if base_counts is None:
            lines.append(line + f"{counts['accuracy']:>8.2f}")
            continue
        kept = 100 * counts["accuracy"] / base_counts["accuracy"] if base_counts["accuracy"] else float("nan")
        lines.append(line + f"{base_counts['accuracy']:>7.2f}  {counts['accuracy']:>7.2f}  {kept:>8.1f}%")
    return "\n".join(lines)


def evaluate(chat_model: ChatModel, eval_args: EvalArguments, data: tuple[list[Any], dict[str, Any]], batch_size: int, cutoff_len: int) -> tuple[dict[str, Any], list[Graded]]:
    start = time.perf_counter()
    graded = grade(chat_model, eval_args, *data, batch_size, cutoff_len)
    return summarise(graded, time.perf_counter() - start), graded


def write_graded(path: Path, graded: list[Graded]) -> None:
    lines = ({key: value for key, value in asdict(item).items() if value is not None} for item in graded)
    write_atomically(path, "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))


def run_accuracy_task(
    model_args: Any, data_args: Any, training_args: Any, generating_args: Any, eval_args: EvalArguments, data: tuple[list[Any], dict[str, Any]]
) -> dict[str, Any]:
    """Evaluate the model on `data` (from load_task), with compare_base its base first; write the results and predictions; print the table."""
    from glmtune.model.adapters import attach_inference_adapters

    output_dir, task = Path(training_args.output_dir), eval_args.task
    batch_size, cutoff_len = training_args.per_device_eval_batch_size, data_args.cutoff_len
    settings = {"task": task, "dataset": data_args.dataset}
    if task == "mcq":
        settings.update(scoring=eval_args.scoring, n_shot=eval_args.n_shot, split=eval_args.split)
    base_summary = None
    if eval_args.compare_base:
        chat_model = ChatModel.from_args(replace(model_args, adapter_name_or_path=None), data_args, generating_args)
        base_summary, base_graded = evaluate(chat_model, eval_args, data, batch_size, cutoff_len)
        write_graded(output_dir / f"base_{task}_predictions.jsonl", base_graded)
        chat_model.model = attach_inference_adapters(chat_model.model, model_args).eval()
    else:
        chat_model = ChatModel.from_args(model_args, data_args, generating_args)
    summary, graded = evaluate(chat_model, eval_args, data, batch_size, cutoff_len)
    write_graded(output_dir / f"{task}_predictions.jsonl", graded)
    words = identity_words(data_args, model_args.adapter_name_or_path) if task == "qa" else []
    if words:
        summary["bleed"] = bleed([(item.question, item.predict) for item in graded], words)
        if base_summary is not None:
            base_summary["bleed"] = bleed([(item.question, item.predict) for item in base_graded], words)
    results = {**settings, **summary}
    if base_summary is not None:
        results.update(base=base_summary, retention=retention(summary, base_summary))
    write_atomically(output_dir / f"{task}_results.json", json.dumps(results, ensure_ascii=False, indent=2) + "\n")
    print(table(results), flush=True)
    print(f"eval {task}: accuracy {results['accuracy']:.2f} on {results['num_questions']} questions; files in {output_dir}", flush=True)
    if words:
        print(f"identity bleed: {summary['bleed']['count']} replies mention {' or '.join(words)}", flush=True)
    return results
