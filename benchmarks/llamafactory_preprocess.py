"""LLaMA-Factory's half of benchmarks/preprocess.py, run in an interpreter that has llamafactory.

Usage: python llamafactory_preprocess.py FILE TOKENIZER_DIR TEMPLATE CUTOFF_LEN WORKERS
Times LLaMA-Factory's own two steps of get_dataset: loading and aligning the file, then
supervised preprocessing; datasets' cache is a fresh folder, so nothing is reused. Prints
{"rows", "kept", "load_s", "preprocess_s", "cpu_s"} as the last line.
"""

import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the map's workers), as in preprocess.py."""
    usages = map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return sum(usage.ru_utime + usage.ru_stime for usage in usages)


def main() -> None:
    data_file, tokenizer_dir, template_name, cutoff_len, workers = sys.argv[1:]
    with tempfile.TemporaryDirectory() as directory:
        os.environ["HF_DATASETS_CACHE"] = str(Path(directory) / "datasets-cache")
        os.environ["HF_HUB_OFFLINE"] = "1"
        from llamafactory.data import get_template_and_fix_tokenizer
        from llamafactory.data.loader import (
            _get_merged_dataset,
            _get_preprocessed_dataset,
        )
        from llamafactory.hparams import get_train_args
        from llamafactory.model import load_tokenizer

        dataset_info = {"bench": {"file_name": str(Path(data_file).resolve())}}
        (Path(directory) / "dataset_info.json").write_text(json.dumps(dataset_info), encoding="utf-8")
        model_args, data_args, training_args, _, _ = get_train_args(
            {
                "model_name_or_path": tokenizer_dir,
                "stage": "sft",
                "do_train": True,
                "finetuning_type": "lora",
                "dataset": "bench",
                "dataset_dir": directory,
                "template": template_name,
                "cutoff_len": int(cutoff_len),
                "preprocessing_num_workers": int(workers),
                "overwrite_cache": True,
                "output_dir": str(Path(directory) / "output"),
                "report_to": "none",
            }
        )
        tokenizer = load_tokenizer(model_args)["tokenizer"]
        template = get_template_and_fix_tokenizer(tokenizer, data_args)
        start = time.perf_counter()
        dataset = _get_merged_dataset(data_args.dataset, model_args, data_args, training_args, "sft")
        loaded, cpu = time.perf_counter(), cpu_seconds()
        processed = _get_preprocessed_dataset(dataset, data_args, training_args, "sft", template, tokenizer)
        done = time.perf_counter()
    figures = {
        "rows": len(dataset),
        "kept": len(processed),
        "load_s": loaded - start,
        "preprocess_s": done - loaded,
        "cpu_s": cpu_seconds() - cpu,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
