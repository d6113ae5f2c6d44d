"""`glmtune eval`, and predict-with-generate after training: generate, score, write both result files.

`--task mcq|qa` goes to eval.accuracy instead; every task saves its resolved settings first.

Both paths end in `evaluate_examples`, which uses ChatModel's generation (the one inference
engine), so an evaluation after training and a later `glmtune eval` of the saved adapter
decode the same way.
"""

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from glmtune.chat.chat_model import ChatModel
from glmtune.data.schema import Example
from glmtune.errors import GlmtuneError
from glmtune.eval.loss import held_out_loss
from glmtune.eval.metrics import check_metrics_installed, corpus_scores
from glmtune.eval.outputs import write_predictions, write_results
from glmtune.eval.predict import predict_cases, prompt_cases
from glmtune.hparams.data_args import DataArguments
from glmtune.hparams.generating_args import GeneratingArguments
from glmtune.hparams.model_args import ModelArguments
from glmtune.paths import write_atomically

logger = logging.getLogger(__name__)


def held_out_examples(data_args: DataArguments, seed: int) -> list[Example]:
    """eval_dataset, or the val_size split of dataset (the rows training held out under the same seed), else dataset."""
    from glmtune.data.loader import load_examples

    loaded = load_examples(data_args, "sft", seed)
    examples = loaded.validation if loaded.validation is not None else loaded.train
    rows = list(examples) if examples is not None else []
    if not rows:
        raise GlmtuneError(f"no sample to predict in dataset={data_args.dataset} eval_dataset={data_args.eval_dataset}")
    return rows


def evaluate_examples(
    chat_model: ChatModel, examples: Sequence[Example], output_dir: str | Path, batch_size: int, data_args: DataArguments
) -> dict[str, Any]:
    """Generate for every example (prompts cut to cutoff_len), score against its answer, add the held-out loss,
    write both files."""
    from tqdm import tqdm

    start = time.perf_counter()
    cutoff_len = data_args.cutoff_len
    cases = prompt_cases(chat_model, examples, cutoff_len)
    truncated = sum(case.truncated for case in cases)
    if truncated:
        logger.warning("%d of %d prompts were longer than cutoff_len=%s: they keep their last tokens", truncated, len(cases), cutoff_len)
    with tqdm(total=len(examples), desc="predict", unit="sample") as progress:
        predictions = predict_cases(chat_model, cases, batch_size, progress)
    runtime = time.perf_counter() - start
    results: dict[str, Any] = {
        **corpus_scores([p.predict for p in predictions], [p.label for p in predictions]),
        "eval_loss": held_out_loss(chat_model, examples, data_args, batch_size),
        "num_samples": len(predictions),
        "num_truncated_prompts": truncated,
        "runtime_seconds": round(runtime, 3),
        "samples_per_second": round(len(predictions) / runtime, 3) if runtime else 0.0,
    }
    write_predictions(output_dir, predictions)
    write_results(output_dir, results)
    print(summary_line(results, Path(output_dir)), flush=True)
    return results


def summary_line(results: dict[str, Any], output_dir: Path) -> str:
    cut = results.get("num_truncated_prompts", 0)
    return (
        f"eval summary: {results['num_samples']} samples in {results['runtime_seconds']:.1f} s "
        f"({results['samples_per_second']:.2f} samples/s){f', {cut} prompts cut to cutoff_len' if cut else ''}; "
        f"bleu-4 {results['bleu-4']:.2f}, rouge-1 {results['rouge-1']:.2f}, "
        f"rouge-2 {results['rouge-2']:.2f}, rouge-l {results['rouge-l']:.2f}, held-out loss {results['eval_loss']}; "
        f"files in {output_dir}"
    )


def run_eval(
    model_args: ModelArguments, data_args: DataArguments, training_args: Any, generating_args: GeneratingArguments
) -> dict[str, Any]:
    """Load the data first (bad input fails before the model loads), then the model, then evaluate."""
    check_metrics_installed()
    examples = held_out_examples(data_args, training_args.seed)
    chat_model = ChatModel.from_args(model_args, data_args, generating_args)
    return evaluate_examples(
        chat_model, examples, training_args.output_dir, training_args.per_device_eval_batch_size, data_args
    )


def predict_after_training(
    model: Any,
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: Any,
    generating_args: GeneratingArguments | None,
) -> dict[str, Any]:
    """Evaluate the model just trained, still in memory, on the held-out data (do_predict / do_eval with generation)."""
    examples = held_out_examples(data_args, training_args.seed)
    chat_model = ChatModel.from_args(model_args, data_args, generating_args, model=model)
    return evaluate_examples(
        chat_model, examples, training_args.output_dir, training_args.per_device_eval_batch_size, data_args
    )


EVAL_CONFIG_FILE = "eval_config.yaml"


def write_eval_config(output_dir: str | Path, *settings: Any) -> Path:
    """The resolved settings, saved before the model loads, so every result file says how it was made."""
    import dataclasses

    from transformers import Seq2SeqTrainingArguments

    from glmtune.hparams.entry import EVAL_DEFAULTS
    from glmtune.hparams.parser import settings_to_yaml

    training_fields = {f.name for f in dataclasses.fields(Seq2SeqTrainingArguments)}
    defaults = {name: value for name, value in EVAL_DEFAULTS.items() if name in training_fields}
    return write_atomically(Path(output_dir) / EVAL_CONFIG_FILE, settings_to_yaml(*settings, training_defaults=defaults))


def main(argv: Sequence[str]) -> int:
    """Read the data (bad input fails before anything is written), save the config, then load the model and evaluate."""
    from glmtune.eval.accuracy import load_task, run_accuracy_task
    from glmtune.hparams.entry import get_eval_args

    model_args, data_args, training_args, generating_args, eval_args = get_eval_args(argv)
    settings = (model_args, data_args, training_args, generating_args, eval_args)
    if eval_args.task == "generate":
        check_metrics_installed()
        examples = held_out_examples(data_args, training_args.seed)
        write_eval_config(training_args.output_dir, *settings)
        chat_model = ChatModel.from_args(model_args, data_args, generating_args)
        evaluate_examples(
            chat_model, examples, training_args.output_dir, training_args.per_device_eval_batch_size, data_args
        )
    else:
        data = load_task(eval_args, data_args.dataset, data_args.max_samples)
        write_eval_config(training_args.output_dir, *settings)
        run_accuracy_task(model_args, data_args, training_args, generating_args, eval_args, data)
    return 0
