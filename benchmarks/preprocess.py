"""Rows/s of supervised preprocessing (issue 3): glmtune, and LLaMA-Factory on the same file when available.

Builds a 50k-row alpaca-format file from the two alpaca demo files of ../shared (repeated,
each copy's instruction varied so rows differ), then times glmtune end to end, reading
(load_examples) and encoding (encode_dataset, no cache), once per worker count.
LLaMA-Factory runs in a subprocess (`llamafactory_preprocess.py`) under --peer-python, or
under this interpreter when it can import llamafactory, with the same tokenizer, template,
cutoff_len and workers. Run: .venv/bin/python benchmarks/preprocess.py [--peer-python PY]
"""

import argparse
import json
import resource
import subprocess
import tempfile
import time
from pathlib import Path

from peers import peer_python

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "llama_factory"
DEMO_FILES = ("alpaca_en_demo.json", "alpaca_zh_demo.json")
PEER_SCRIPT = Path(__file__).with_name("llamafactory_preprocess.py")
RUSAGE = (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)


def build_file(path: Path, rows: int) -> None:
    """`rows` alpaca rows cycling through both demo files; copy k of a row ends its instruction with (k)."""
    demo = [row for name in DEMO_FILES for row in json.loads((SHARED_DATA / name).read_text(encoding="utf-8"))]
    data = []
    for index in range(rows):
        row = dict(demo[index % len(demo)])
        copy = index // len(demo)
        if copy:
            row["instruction"] = f"{row['instruction']} ({copy})"
        data.append(row)
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def time_glmtune(path: Path, template_name: str, cutoff_len: int, workers: int) -> dict[str, float]:
    from glmtune.data.loader import load_examples
    from glmtune.data.shapes import encode_dataset
    from glmtune.data.templates import get_template
    from glmtune.data.tokenizer import load_tokenizer
    from glmtune.hparams.data_args import DataArguments
    from glmtune.hparams.model_args import ModelArguments

    tokenizer = load_tokenizer(ModelArguments())
    data_args = DataArguments(
        dataset=str(path), template=template_name, cutoff_len=cutoff_len, preprocessing_num_workers=workers
    )
    start = time.perf_counter()
    examples = load_examples(data_args, "sft").train
    loaded, cpu = time.perf_counter(), cpu_seconds()
    processed, report = encode_dataset(examples, "supervised", get_template(template_name), tokenizer, data_args)
    done = time.perf_counter()
    assert report.kept == len(processed) == len(examples), report.summary()
    return {"rows": report.read, "load_s": loaded - start, "preprocess_s": done - loaded, "cpu_s": cpu_seconds() - cpu}


def tokenizer_floor(path: Path, template_name: str) -> float:
    """CPU seconds of the tokenizer alone: one call over every text that preprocessing tokenizes for these rows.

    Any preprocessing that yields the same ids pays at least this, so it bounds the ratio to LLaMA-Factory.
    """
    from glmtune.data.loader import load_examples
    from glmtune.data.templates import TOKEN, get_template
    from glmtune.data.tokenizer import load_tokenizer
    from glmtune.hparams.data_args import DataArguments
    from glmtune.hparams.model_args import ModelArguments

    tokenizer, template = load_tokenizer(ModelArguments()), get_template(template_name)
    examples = load_examples(DataArguments(dataset=str(path), template=template_name), "sft").train
    texts = [
        piece.text
        for example in examples
        for turn in template.pieces(tokenizer, example["messages"], example["system"])
        for side in turn
        for piece in side
        if piece.kind != TOKEN
    ]
    cpu = cpu_seconds()
    tokenizer(texts, add_special_tokens=False, return_attention_mask=False)
    return cpu_seconds() - cpu


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the map's workers): a figure that other load on
    the machine disturbs far less than wall time."""
    return sum(usage.ru_utime + usage.ru_stime for usage in map(resource.getrusage, RUSAGE))


def time_peer(python: str, path: Path, template_name: str, cutoff_len: int, workers: int) -> dict[str, float]:
    """LLaMA-Factory's figures from its own interpreter; the script prints one JSON line last."""
    from glmtune.default_model import ensure_default_model

    arguments = [str(path), str(ensure_default_model()), template_name, str(cutoff_len), str(workers)]
    result = subprocess.run([python, str(PEER_SCRIPT), *arguments], capture_output=True, text=True, check=False)
    if result.returncode:
        raise RuntimeError(f"LLaMA-Factory run failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


COLUMNS = ("system", "workers", "load s", "preprocess s", "preprocess CPU s", "preprocess rows/s", "e2e rows/s")
WIDTHS = (13, 8, 8, 14, 18, 19, 12)


def line(system: str, workers: int, figures: dict[str, float]) -> tuple[str, float]:
    """A table row, and the end-to-end rows/s it shows."""
    end_to_end = figures["rows"] / (figures["load_s"] + figures["preprocess_s"])
    values = (
        system,
        workers,
        f"{figures['load_s']:.1f}",
        f"{figures['preprocess_s']:.1f}",
        f"{figures['cpu_s']:.1f}",
        f"{figures['rows'] / figures['preprocess_s']:.0f}",
        f"{end_to_end:.0f}",
    )
    return table_row(values), end_to_end


def table_row(values: tuple) -> str:
    return values[0].ljust(WIDTHS[0]) + "".join(str(value).rjust(width) for value, width in zip(values[1:], WIDTHS[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--template", default="smollm2")
    parser.add_argument("--cutoff-len", type=int, default=1024)
    parser.add_argument("--peer-python", help="an interpreter that can import llamafactory")
    options = parser.parse_args()
    peer = peer_python(options.peer_python)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "alpaca_bench.json"
        build_file(path, options.rows)
        print(f"{options.rows} rows, template {options.template}, cutoff_len {options.cutoff_len}")
        print(table_row(COLUMNS))
        for workers in options.workers:
            text, ours = line("glmtune", workers, time_glmtune(path, options.template, options.cutoff_len, workers))
            print(text, flush=True)
            if peer is not None:
                figures = time_peer(peer, path, options.template, options.cutoff_len, workers)
                text, theirs = line("LLaMA-Factory", workers, figures)
                print(f"{text}   glmtune / LLaMA-Factory end to end: {ours / theirs:.2f}x", flush=True)
        floor = tokenizer_floor(path, options.template)
        print(
            f"tokenizer alone (one call over all texts, 1 process): {floor:.1f} CPU s, {options.rows / floor:.0f} rows/CPU s"
        )
        if peer is None:
            print("llamafactory is not importable here and no --peer-python was given: glmtune figures only")


if __name__ == "__main__":
    main()
