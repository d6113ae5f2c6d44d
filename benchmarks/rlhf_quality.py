"""RLHF quality on the default model (issue 13, item 9): do DPO answers beat SFT answers, and does GRPO after a
short SFT beat SFT alone on the same training time?

dpo: a reward model (`--stage rm`) on the bundled `preference` pairs, an SFT adapter on their chosen answers,
and DPO on top of that SFT adapter (so its reference model is the SFT model, as in SFT -> DPO pipelines);
then the base, SFT and DPO models answer the held-out prompts of benchmarks/data/preference_heldout*.json
(50 prompts of the bundled set's kinds, en + zh, none in training) with the same greedy decoding, and the
reward model scores every answer. Win rate of DPO over SFT: the share of prompts whose DPO answer scores
higher (ties, the same score, counted apart), with a two-sided sign test. The reward model's accuracy on the
same held-out pairs (chosen scored above rejected) says how far to trust it as the judge.

grpo: on math_4op, SFT for --sft-steps, then GRPO (`--reward_funcs math_exact,format`) from that adapter
for --grpo-steps, against SFT alone for as many steps as fit in the two runs' summed process CPU seconds
(--equalize cpu, at the short run's pace: on a CPU shared with other jobs a run's wall time says more about
their load than about the run) or train_runtime (--equalize wall). All three adapters answer held-out
math_4op problems of another seed (those whose question occurs in training dropped) greedily, through
glmtune's eval path; exact match is glmtune's `math_exact` reward (the answer's last number equals the
reference's), `format` its equation check. With --pass-k, each also samples k answers to the first held-out
problems: mean@k (right answers per draw), pass@k (problems right at least once) and the "mixed" problems
(right in some draws, not all), which are the groups GRPO gets a gradient from.

Every training run is a `glmtune train` subprocess on --threads torch threads (1 by default: on a shared
CPU, two threads waiting on each other run several times slower); the timed runs of the grpo comparison
hold --lock (flock) while they run; each reports the trainer's own train_runtime and its process's CPU seconds.
Run:
  .venv/bin/python benchmarks/rlhf_quality.py dpo --work-dir /tmp/rlhf/dpo
  .venv/bin/python benchmarks/rlhf_quality.py grpo --work-dir /tmp/rlhf/grpo --sft-steps 100 --grpo-steps 40 \
      [--grpo-setting learning_rate=1e-4 ...] [--reuse]
"""

import argparse
import json
import math
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

TEMPLATE = "smollm2"
DATA = Path(__file__).with_name("data")
HELD_OUT_PAIRS = (DATA / "preference_heldout.json", DATA / "preference_heldout_more.json")
MATH_TRAIN = "{size: 2000, seed: 42}"  # the bundled entry's own rows


def glmtune_train(flags: Sequence[str], output_dir: Path, options: argparse.Namespace, timed: bool) -> dict[str, Any]:
    """Run `glmtune train` (under the CPU lock when timed) unless --reuse finds its results; return them."""
    results, usage = output_dir / "all_results.json", output_dir.parent / f"{output_dir.name}.cpu.json"
    if options.reuse and results.is_file():
        print(f"reusing {output_dir}", flush=True)
    else:
        command = [sys.executable, "-m", "glmtune", "train", *flags, "--template", TEMPLATE,
                   "--output_dir", str(output_dir)]  # fmt: skip
        if timed and options.lock:
            command = ["flock", options.lock, *command]
        load_before = os.getloadavg()
        print(f"$ {' '.join(command)}\n  load before: {load_before}", flush=True)
        threads = str(options.threads)
        env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "TOKENIZERS_PARALLELISM": "false"}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        with (output_dir.parent / f"{output_dir.name}.log").open("w", encoding="utf-8") as log:
            subprocess.run(command, check=True, env=env, stdout=log, stderr=subprocess.STDOUT)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        usage.write_text(json.dumps({"cpu_seconds": cpu, "load_before": load_before, "load_after": os.getloadavg()}))
        print(f"  CPU {cpu:.0f} s (the whole process); load after: {os.getloadavg()}", flush=True)
    state = json.loads((output_dir / "trainer_state.json").read_text(encoding="utf-8"))
    measured = json.loads(usage.read_text(encoding="utf-8")) if usage.is_file() else {}
    return {**json.loads(results.read_text(encoding="utf-8")), "global_step": state["global_step"], **measured}


def as_flags(settings: Sequence[str]) -> list[str]:
    """key=value settings as glmtune flags."""
    return [item for setting in settings for item in (f"--{setting.split('=', 1)[0]}", setting.split("=", 1)[1])]


def model_args(adapter: Path | None) -> Any:
    from glmtune.hparams import ModelArguments

    return ModelArguments(adapter_name_or_path=str(adapter) if adapter else None)


def chat_model(adapter: Path | None, max_new_tokens: int, temperature: float | None = None) -> Any:
    """glmtune's inference engine, greedy as `glmtune eval` decodes, or sampling at `temperature` (top_p 1)."""
    from glmtune.chat.chat_model import ChatModel
    from glmtune.hparams import DataArguments, GeneratingArguments

    sampling = {"do_sample": False} if temperature is None else {"do_sample": True, "temperature": temperature, "top_p": 1.0}
    generating = GeneratingArguments(max_new_tokens=max_new_tokens, **sampling)
    return ChatModel.from_args(model_args(adapter), DataArguments(template=TEMPLATE), generating)


def sign_test(wins: int, losses: int) -> float:
    """Two-sided p-value of wins vs losses under "each is as likely" (ties left out)."""
    trials = wins + losses
    if not trials:
        return 1.0
    tail = sum(math.comb(trials, k) for k in range(min(wins, losses) + 1)) / 2**trials
    return min(1.0, 2 * tail)


def train_dpo_pipeline(options: argparse.Namespace, train_pairs: list[dict[str, str]]) -> dict[str, dict[str, Any]]:
    """The reward model, SFT on the chosen answers, DPO from the SFT adapter: each a plain `glmtune train`."""
    work = options.work_dir
    chosen_file = work / "preference_chosen.json"  # SFT data: the chosen answers of the pairs DPO trains on
    chosen_file.write_text(json.dumps([{"instruction": p["instruction"], "input": p["input"], "output": p["chosen"]}
                                       for p in train_pairs], ensure_ascii=False), encoding="utf-8")  # fmt: skip
    extra = as_flags(options.setting)
    dpo_flags = ["--stage", "dpo", "--dataset", "preference", "--adapter_name_or_path", str(work / "sft"), *extra]
    return {
        "rm": glmtune_train(["--stage", "rm", "--dataset", "preference", *extra], work / "rm", options, timed=False),
        "sft": glmtune_train(["--stage", "sft", "--dataset", str(chosen_file), *extra], work / "sft", options, False),
        "dpo": glmtune_train(dpo_flags, work / "dpo", options, timed=False),
    }


def held_out_answers(options: argparse.Namespace, prompts: list[list[dict[str, str]]]) -> dict[str, list[str]]:
    """Greedy answers of the base, SFT and DPO models to every prompt (kept in answers.json for --reuse)."""
    kept = options.work_dir / "answers.json"
    if options.reuse and kept.is_file():
        rows = json.loads(kept.read_text(encoding="utf-8"))
        return {name: [row[name] for row in rows] for name in ("base", "sft", "dpo")}
    answers: dict[str, list[str]] = {}
    for name, adapter in (("base", None), ("sft", options.work_dir / "sft"), ("dpo", options.work_dir / "dpo")):
        engine = chat_model(adapter, options.max_new_tokens)
        answers[name] = [reply.text for start in range(0, len(prompts), options.batch_size)
                         for reply in engine.batch_chat(prompts[start : start + options.batch_size])]  # fmt: skip
    rows = [{"prompt": prompt[0]["content"], **{name: texts[i] for name, texts in answers.items()}}
            for i, prompt in enumerate(prompts)]  # fmt: skip
    kept.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    return answers


def run_dpo(options: argparse.Namespace) -> None:
    from glmtune.data.registry import bundled_dir
    from glmtune.eval.score import load_reward_model, score_answer
    from glmtune.hparams import DataArguments

    options.work_dir.mkdir(parents=True, exist_ok=True)
    train_pairs = json.loads((bundled_dir() / "preference.json").read_text(encoding="utf-8"))
    runs = train_dpo_pipeline(options, train_pairs)
    pairs = [pair for path in HELD_OUT_PAIRS for pair in json.loads(path.read_text(encoding="utf-8"))]
    train_prompts = {pair["instruction"] for pair in train_pairs}
    assert not any(pair["instruction"] in train_prompts for pair in pairs), "a held-out prompt is in the training data"
    prompts = [[{"role": "user", "content": "\n".join(filter(None, (p["instruction"], p["input"])))}] for p in pairs]
    answers = held_out_answers(options, prompts)
    reward_model, tokenizer = load_reward_model(model_args(options.work_dir / "rm"))
    data_args = DataArguments(template=TEMPLATE)

    def score(prompt: list[dict[str, str]], answer: str) -> float:
        return score_answer(reward_model, tokenizer, data_args, prompt[0]["content"], answer)

    scores = {name: [score(prompt, answer) for prompt, answer in zip(prompts, texts)]
              for name, texts in answers.items()}  # fmt: skip
    right = [score(prompt, pair["chosen"]) > score(prompt, pair["rejected"]) for prompt, pair in zip(prompts, pairs)]
    longer = [len(pair["chosen"]) > len(pair["rejected"]) for pair in pairs]  # is the chosen answer the longer one?
    print(f"\nheld-out prompts: {len(pairs)}; the reward model ranks {sum(right)}/{len(pairs)} of their pairs right: "
          f"{sum(r for r, c in zip(right, longer) if c)}/{sum(longer)} where the chosen answer is the longer one, "
          f"{sum(r for r, c in zip(right, longer) if not c)}/{len(pairs) - sum(longer)} where it is not")  # fmt: skip
    every_answer = [(len(text), value) for name in answers for text, value in zip(answers[name], scores[name])]
    print(f"correlation of reward-model score and answer length (characters), all {len(every_answer)} answers: "
          f"{statistics.correlation(*zip(*every_answer)):.2f}")  # fmt: skip
    print("| model | train steps / s | mean answer characters | mean reward-model score |")
    print("| --- | ---: | ---: | ---: |")
    for name in answers:
        run = runs.get(name)
        steps = f"{run['global_step']} / {run['train_runtime']:.0f}" if run else "-"
        length = sum(map(len, answers[name])) / len(pairs)
        print(f"| {name} | {steps} | {length:.0f} | {sum(scores[name]) / len(pairs):.3f} |")
    print("\n| comparison | wins | losses | ties | win rate | sign test p | decided for the longer answer |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for new, old in (("dpo", "sft"), ("sft", "base"), ("dpo", "base")):
        diffs = [a - b for a, b in zip(scores[new], scores[old])]
        wins, losses = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
        longer = sum((d > 0) == (len(a) > len(b)) for d, a, b in zip(diffs, answers[new], answers[old]) if d)
        print(f"| {new} over {old} | {wins} | {losses} | {len(diffs) - wins - losses} | {wins / len(diffs):.2f} | "
              f"{sign_test(wins, losses):.3f} | {longer}/{wins + losses} |")  # fmt: skip
    print(f"identical answers, dpo vs sft: {sum(a == b for a, b in zip(answers['dpo'], answers['sft']))}; "
          f"reward model: {runs['rm']['global_step']} steps; answers in {options.work_dir}/answers.json")  # fmt: skip


def math_examples(options: argparse.Namespace) -> list[Any]:
    """Held-out math_4op problems (another seed), without any whose question is in the training rows."""
    from glmtune.data.generators import math_4op
    from glmtune.eval.runner import held_out_examples
    from glmtune.hparams import DataArguments

    train_questions = {row["instruction"] for row in math_4op(**yaml_mapping(MATH_TRAIN))}
    data_args = DataArguments(dataset="math_4op", template=TEMPLATE, generator_args=options.heldout)
    examples = held_out_examples(data_args, seed=42)
    return [example for example in examples if example["messages"][0]["content"] not in train_questions]


def yaml_mapping(text: str) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(text)


def math_scores(adapter: Path, examples: list[Any], options: argparse.Namespace) -> dict[str, Any]:
    """Exact match and equation form of greedy answers, computed once per adapter and kept beside it."""
    from glmtune.eval.predict import generate_predictions
    from glmtune.train.rewards import format as equation_form
    from glmtune.train.rewards import math_exact

    kept = adapter / f"heldout_{re.sub(r'[^0-9a-z]+', '_', options.heldout)}.json"
    if options.reuse and kept.is_file():
        return json.loads(kept.read_text(encoding="utf-8"))
    predictions = generate_predictions(chat_model(adapter, options.max_new_tokens), examples, options.batch_size)
    answers, labels = [p.predict for p in predictions], [p.label for p in predictions]
    correct = math_exact(answers, labels)
    result = {"problems": len(predictions), "exact": sum(correct), "format": sum(equation_form(answers)),
              "correct": correct}  # fmt: skip
    kept.write_text(json.dumps(result), encoding="utf-8")
    return result


def sampled_scores(adapter: Path, examples: list[Any], options: argparse.Namespace) -> dict[str, Any]:
    """What sampling finds that greedy decoding may not (the groups GRPO learns from): --pass-k answers at
    --sample-temperature to each of the first --sample-problems problems; kept beside the adapter."""
    from glmtune.eval.predict import generate_predictions
    from glmtune.train.rewards import math_exact

    examples = examples[: options.sample_problems]
    name = f"sampled_{options.pass_k}_{options.sample_temperature}_{len(examples)}_{options.heldout}"
    kept = adapter / f"{re.sub(r'[^0-9a-z]+', '_', name)}.json"
    if options.reuse and kept.is_file():
        return json.loads(kept.read_text(encoding="utf-8"))
    engine = chat_model(adapter, options.max_new_tokens, options.sample_temperature)
    hits = [0] * len(examples)
    for _ in range(options.pass_k):
        predictions = generate_predictions(engine, examples, options.batch_size)
        right = math_exact([p.predict for p in predictions], [p.label for p in predictions])
        hits = [count + value for count, value in zip(hits, right, strict=True)]
    result = {"problems": len(examples), "mean": sum(hits) / options.pass_k, "pass": sum(h > 0 for h in hits),
              "mixed": sum(0 < h < options.pass_k for h in hits)}  # fmt: skip
    kept.write_text(json.dumps(result), encoding="utf-8")
    return result


def run_grpo(options: argparse.Namespace) -> None:
    work = options.work_dir
    work.mkdir(parents=True, exist_ok=True)
    data = ["--dataset", "math_4op", "--generator_args", MATH_TRAIN]
    short_dir = work / f"sft_{options.sft_steps}"
    short_flags = ["--stage", "sft", *data, "--max_steps", str(options.sft_steps)]
    short = glmtune_train(short_flags, short_dir, options, timed=True)
    named = "_".join(setting.replace("=", "-").replace(",", "+") for setting in options.grpo_setting)  # a comma splits adapter lists
    grpo_dir = work / "_".join(filter(None, ("grpo", str(options.sft_steps), str(options.grpo_steps), named)))
    grpo_flags = ["--stage", "grpo", *data, "--reward_funcs", "math_exact,format",
                  "--max_steps", str(options.grpo_steps), "--adapter_name_or_path", str(short_dir),
                  *as_flags(options.grpo_setting)]  # fmt: skip
    grpo = glmtune_train(grpo_flags, grpo_dir, options, timed=True)
    measure = "train_runtime" if options.equalize == "wall" else "cpu_seconds"
    long_steps = options.sft_long_steps or round(options.sft_steps * (short[measure] + grpo[measure]) / short[measure])
    long_flags = ["--stage", "sft", *data, "--max_steps", str(long_steps)]
    long = glmtune_train(long_flags, work / f"sft_{long_steps}", options, timed=True)
    examples = math_examples(options)
    rows = [
        (f"SFT {options.sft_steps} steps", [short], short_dir),
        (f"SFT {options.sft_steps} + GRPO {options.grpo_steps} steps", [short, grpo], grpo_dir),
        (f"SFT alone {long_steps} steps", [long], work / f"sft_{long_steps}"),
    ]
    print(f"\nheld-out math_4op {options.heldout}: {len(examples)} problems not in training; GRPO settings: "
          f"{' '.join(options.grpo_setting) or 'defaults'}")  # fmt: skip
    k = options.pass_k
    sampled_header = f" first {options.sample_problems}: greedy / mean@{k} / pass@{k} / mixed (T {options.sample_temperature}) |"
    print("| model | train_runtime s | process CPU s | exact match | equation form |" + (sampled_header if k else ""))
    print("| --- | ---: | ---: | ---: | ---: |" + (" ---: |" if k else ""))
    results = [math_scores(adapter, examples, options) for _, _, adapter in rows]
    for (name, runs, adapter), result in zip(rows, results):
        n, seconds, cpu = result["problems"], sum(r["train_runtime"] for r in runs), sum(r["cpu_seconds"] for r in runs)
        sampled = ""
        if k:
            draws = sampled_scores(adapter, examples, options)
            greedy = sum(result["correct"][: draws["problems"]])
            sampled = f" {greedy:.0f} / {draws['mean']:.1f} / {draws['pass']} / {draws['mixed']} |"
        print(f"| {name} | {seconds:.0f} | {cpu:.0f} | {result['exact'] / n:.1%} ({result['exact']:.0f}/{n}) | "
              f"{result['format'] / n:.1%} |{sampled}", flush=True)  # fmt: skip
    for first, second in ((0, 1), (2, 1)):  # paired on the same problems: each arm against SFT + GRPO
        both = list(zip(results[first]["correct"], results[second]["correct"]))
        only_first, only_second = sum(a > b for a, b in both), sum(b > a for a, b in both)
        print(f"{rows[first][0]} vs {rows[second][0]}: right only in the first {only_first}, only in the second "
              f"{only_second}, sign test p {sign_test(only_first, only_second):.3f}")  # fmt: skip

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="experiment", required=True)
    dpo = commands.add_parser("dpo", help="reward-model win rate of DPO answers over SFT answers")
    dpo.add_argument("--setting", action="append", default=[], help="a glmtune setting for all three runs, key=value")
    dpo.add_argument("--max-new-tokens", type=int, default=96)
    grpo = commands.add_parser("grpo", help="math_4op exact match: SFT + GRPO vs SFT alone on the same train time")
    grpo.add_argument("--sft-steps", type=int, default=100, help="steps of the short SFT run that GRPO starts from")
    grpo.add_argument("--grpo-steps", type=int, default=40)
    grpo.add_argument("--sft-long-steps", type=int, help="steps of SFT alone (default: what fits the two runs' time)")
    grpo.add_argument("--equalize", choices=("cpu", "wall"), default="cpu",
                      help="what SFT alone matches: process CPU seconds (robust on a shared CPU) or train_runtime")
    grpo.add_argument("--grpo-setting", action="append", default=[], help="extra glmtune setting for GRPO, key=value")
    grpo.add_argument("--heldout", default="{size: 200, seed: 7}", help="math_4op generator_args of held-out problems")
    grpo.add_argument("--max-new-tokens", type=int, default=32)
    grpo.add_argument("--pass-k", type=int, default=0, help="sampled answers per problem for mean@k/pass@k (0: none)")
    grpo.add_argument("--sample-temperature", type=float, default=0.7)
    grpo.add_argument("--sample-problems", type=int, default=200, help="held-out problems the sampled answers cover")
    for command in (dpo, grpo):
        command.add_argument("--work-dir", type=Path, required=True, help="where adapters, logs and answers go")
        command.add_argument("--threads", type=int, default=1, help="torch threads, for training and generation alike")
        command.add_argument("--batch-size", type=int, default=8, help="generation batch size")
        command.add_argument("--lock", default="/tmp/glmtune-cpu.lock", help="flock file of timed runs ('' for none)")
        command.add_argument("--reuse", action="store_true", help="skip a run (or an evaluation) whose results exist")
    options = parser.parse_args()
    import torch

    torch.set_num_threads(options.threads)
    started = time.perf_counter()
    (run_dpo if options.experiment == "dpo" else run_grpo)(options)
    print(f"\ntotal {time.perf_counter() - started:.0f} s; load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
