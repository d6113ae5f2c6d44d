"""GPU training throughput (issue 16, item 4): random-init models of real shapes, bf16 LoRA, QLoRA (nf4) and full.

Each run is one `glmtune train` subprocess (and, where LLaMA-Factory is installed, one of its
`llamafactory.cli train` with the same settings): packed sequences of `--cutoff` tokens (1024) from
../shared's alpaca_en_demo.json, batch `--batch-size`, bf16, lora rank 8 on all linear layers,
a fixed number of steps with a log record each. Models are random-init with the shapes of
chatglm3-6b (../shared/models/chatglm3-6b/config.json, as glmtune converts it to GlmForCausalLM),
Llama-2-7B and Qwen2.5-7B, written once as bf16 safetensors with a small byte-level tokenizer
(tests/tiny_models.py; random weights make the text irrelevant, only the token count matters).

Reported per run: tokens/s over the steps after `--warmup`, MFU, the fraction of this GPU's measured
bf16 matmul peak, peak device memory (nvidia-smi, the run's process: weights, activations, allocator
cache and CUDA context), and the losses. MFU = tokens/s x FLOPs per token / the GPU's dense bf16 peak
(PEAK_TFLOPS below, or --peak-tflops), with
    FLOPs per token = k * N + 6 * L * h * s
k = 6 for full fine-tuning (forward 2N, backward 4N), 4 for LoRA and QLoRA (frozen weights need no
weight gradients; the adapters' own FLOPs are negligible at rank 8), N the parameters of every
matrix product (all weights but the input embedding, whose lookup is not one), and 6 * L * h * s
the causal attention scores and values of L layers of width h over s = cutoff tokens, forward and
backward (PaLM's 12 * L * h * s halved, since a causal mask skips half of each score matrix).
A full fine-tune runs only where its estimate, 16 bytes per parameter (fp32 weights, gradients and
two Adam moments), leaves room on the GPU; an out-of-memory run is recorded as such.

Never part of the test suite. On a machine without a CUDA GPU it exits at once, saying so.
Run: .venv/bin/python benchmarks/gpu_throughput.py [--peer-python /path/to/llamafactory/python] [--out F.json]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from peers import peer_python
from train_throughput import DATA_FILE, GLMTUNE, Run, figures, run_training

REPO = Path(__file__).resolve().parents[1]
CHATGLM3_CONFIG = REPO.parent / "shared" / "models" / "chatglm3-6b" / "config.json"
# Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's data sheets, TFLOP/s; matched against the device name.
PEAK_TFLOPS = {
    "H200": 989.4,
    "GH200": 989.4,
    "H100 NVL": 835.0,
    "H100 PCIe": 756.0,
    "H100": 989.4,  # SXM
    "H800": 989.4,
    "B200": 2250.0,
    "A100": 312.0,
    "A800": 312.0,
    "L40S": 362.1,
    "L40": 181.0,
    "L4": 121.0,
    "A10G": 70.0,
    "A10": 125.0,
    "RTX 6000 Ada": 364.2,
    "RTX A6000": 154.8,
    "RTX 4090": 165.2,
    "RTX 3090": 71.0,
}
LLAMA2_7B = {
    "model_type": "llama", "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008,
    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32, "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-5, "tie_word_embeddings": False,
}  # fmt: skip
QWEN25_7B = {
    "model_type": "qwen2", "vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944,
    "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4, "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6, "tie_word_embeddings": False,
}  # fmt: skip
METHODS = {"lora": {"finetuning_type": "lora"}, "qlora": {"finetuning_type": "lora", "quantization_bit": 4}, "full": {"finetuning_type": "full"}}
FULL_BYTES_PER_PARAMETER = 16


def require_cuda() -> None:
    """Fail before anything slow: this benchmark measures a GPU and has nothing to say about a CPU."""
    import torch

    if not torch.cuda.is_available():
        sys.exit(
            "gpu_throughput.py needs a CUDA GPU, and none is visible here (torch.cuda.is_available() is False; "
            f"torch {torch.__version__}, CUDA build {torch.version.cuda}). Run it on a GPU machine with a CUDA build of torch."
        )


def shape_configs() -> dict[str, dict[str, Any]]:
    sys.path.insert(0, str(REPO / "src"))
    from glmtune.convert.chatglm_config import LAYOUT_KEY, to_native_config

    chatglm3 = to_native_config(json.loads(CHATGLM3_CONFIG.read_text(encoding="utf-8")))
    chatglm3.pop(LAYOUT_KEY)
    chatglm3.pop("architectures")
    return {"chatglm3-6b": chatglm3, "llama2-7b": LLAMA2_7B, "qwen2.5-7b": QWEN25_7B}


def write_random_model(config_dict: dict[str, Any], directory: Path) -> dict[str, int]:
    """A random bf16 model of this shape, initialised on the GPU, saved with the test suite's tiny tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    sys.path.insert(0, str(REPO / "tests"))
    from tiny_models import build_tokenizer

    tokenizer = build_tokenizer(directory)
    values = {**config_dict, "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id, "bos_token_id": None}
    config = AutoConfig.for_model(values.pop("model_type"), **values)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.generation_config.pad_token_id, model.generation_config.eos_token_id = tokenizer.pad_token_id, tokenizer.eos_token_id
    model.save_pretrained(directory)
    counts = {
        "parameters": sum(p.numel() for p in model.parameters()),
        "matmul_parameters": sum(p.numel() for p in model.parameters()) - model.get_input_embeddings().weight.numel(),
        "layers": config.num_hidden_layers,
        "hidden_size": config.hidden_size,
    }
    del model
    torch.cuda.empty_cache()
    return counts


def flops_per_token(counts: dict[str, int], method: str, cutoff: int) -> float:
    weights = (6 if method == "full" else 4) * counts["matmul_parameters"]
    return weights + 6 * counts["layers"] * counts["hidden_size"] * cutoff


def gpu_peak_tflops(name: str, override: float | None) -> float | None:
    if override:
        return override
    return next((peak for key, peak in PEAK_TFLOPS.items() if key in name), None)


def measured_matmul_tflops(size: int = 8192, repeats: int = 20) -> float:
    """Best bf16 TFLOP/s of size x size matmuls on this GPU: the ceiling the runs are also compared with."""
    import torch

    a = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    best = float("inf")
    for _ in range(5):
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    del a, b
    torch.cuda.empty_cache()
    return 2 * size**3 * repeats / best / 1e12


class DeviceMemoryPeak:
    """The highest device memory in use during a run, less what was in use before it (nvidia-smi every 0.2 s)."""

    def __init__(self) -> None:
        self.baseline = self.used_mb()
        self.peak = self.baseline
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.poll, daemon=True)

    @staticmethod
    def used_mb() -> int:
        output = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                                capture_output=True, text=True, check=True)  # fmt: skip
        return int(output.stdout.strip().splitlines()[0])

    def poll(self) -> None:
        while not self.stopped.wait(0.2):
            self.peak = max(self.peak, self.used_mb())

    def __enter__(self) -> "DeviceMemoryPeak":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join()

    @property
    def run_mb(self) -> int:
        return self.peak - self.baseline


def settings(method: str, model_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One run's settings, the same for both systems."""
    return {
        "stage": "sft", "do_train": True, "model_name_or_path": str(model_dir), "template": "qwen",
        "cutoff_len": args.cutoff, "packing": True, "per_device_train_batch_size": args.batch_size,
        "gradient_accumulation_steps": 1, "max_steps": args.steps, "learning_rate": 1e-5 if method == "full" else 2e-4,
        "lr_scheduler_type": "constant", "logging_steps": 1, "save_strategy": "no", "report_to": "none", "bf16": True,
        "lora_rank": 8, "lora_target": "all", "seed": 42, **METHODS[method],
    }  # fmt: skip


def run_glmtune(run_settings: dict[str, Any], work: Path) -> Run:
    output_dir = work / "glmtune"
    arguments = {**run_settings, "dataset": str(DATA_FILE), "output_dir": str(output_dir)}
    command = [str(GLMTUNE), "train", *(f"--{key}={value}" for key, value in arguments.items())]
    return run_training(command, output_dir, {**os.environ, "PYTHONUNBUFFERED": "1"})


def run_llamafactory(python: str, run_settings: dict[str, Any], work: Path) -> Run:
    dataset_dir = work / "lf_data"
    dataset_dir.mkdir(exist_ok=True)
    (dataset_dir / "dataset_info.json").write_text(json.dumps({"alpaca_en_demo": {"file_name": str(DATA_FILE)}}), encoding="utf-8")
    output_dir = work / "llamafactory"
    config = {**run_settings, "dataset": "alpaca_en_demo", "dataset_dir": str(dataset_dir), "output_dir": str(output_dir),
              "include_num_input_tokens_seen": "non_padding", "flash_attn": "auto"}  # fmt: skip
    path = work / "llamafactory.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return run_training([python, "-m", "llamafactory.cli", "train", str(path)], output_dir, {**os.environ, "PYTHONUNBUFFERED": "1"})


def measure(system: str, run: Any, args: argparse.Namespace, counts: dict[str, int], method: str, peaks: dict[str, Any]) -> dict[str, Any]:
    """Run one system's training and turn it into figures; an out-of-memory run is a result, not a crash."""
    try:
        with DeviceMemoryPeak() as memory:
            result: Run = run()
    except RuntimeError as error:
        status = "out of memory" if "OutOfMemoryError" in str(error) or "CUDA out of memory" in str(error) else "failed"
        return {"system": system, "status": status, "error": str(error)[-1500:]}
    per_token = flops_per_token(counts, method, args.cutoff)
    rate = figures(result, args.warmup, args.batch_size, per_token, 1.0)
    mfu = rate.tokens_per_s * per_token / (peaks["datasheet_tflops"] * 1e12) if peaks["datasheet_tflops"] else None
    return {
        "system": system,
        "status": "ok",
        "tokens_per_s": round(rate.tokens_per_s, 1),
        "samples_per_s": round(rate.samples_per_s, 3),
        "mfu": round(mfu, 4) if mfu is not None else None,
        "fraction_of_measured_matmul_peak": round(rate.tokens_per_s * per_token / (peaks["measured_tflops"] * 1e12), 4),
        "peak_device_memory_mb": memory.run_mb,
        "losses": [round(loss, 4) for loss in result.losses],
        "wall_s": round(result.wall_s, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["chatglm3-6b", "llama2-7b", "qwen2.5-7b"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--cutoff", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5, help="steps left out of the rates (compilation, allocator growth)")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak, where PEAK_TFLOPS does not name it")
    parser.add_argument("--peer-python", help="a Python with LLaMA-Factory 0.9.5 installed (default: this one, if it has it)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "gpu_throughput.json")
    parser.add_argument("--work", type=Path, help="where models and runs are written (default: a temporary folder)")
    args = parser.parse_args()
    require_cuda()

    import torch

    name = torch.cuda.get_device_name(0)
    total_mb = torch.cuda.get_device_properties(0).total_memory / 2**20
    peaks = {"device": name, "datasheet_tflops": gpu_peak_tflops(name, args.peak_tflops), "measured_tflops": round(measured_matmul_tflops(), 1)}
    peer = peer_python(args.peer_python)
    report: dict[str, Any] = {**peaks, "device_memory_mb": round(total_mb), "torch": torch.__version__,
                              "settings": vars(args) | {"out": str(args.out), "work": str(args.work)},
                              "llamafactory": peer, "runs": []}  # fmt: skip
    configs = shape_configs()
    work_root = args.work or Path(tempfile.mkdtemp(prefix="gpu-throughput-"))
    for shape in args.shapes:
        model_dir = work_root / shape
        counts = write_random_model(configs[shape], model_dir)
        for method in args.methods:
            if method == "full" and counts["parameters"] * FULL_BYTES_PER_PARAMETER / 2**20 > total_mb:
                report["runs"].append({"shape": shape, "method": method, "status": "skipped: fp32 weights, gradients and Adam need "
                                       f"{counts['parameters'] * FULL_BYTES_PER_PARAMETER / 2**30:.0f} GiB"})  # fmt: skip
                continue
            run_settings = settings(method, model_dir, args)
            systems = {"glmtune": lambda work=work_root / f"{shape}-{method}": run_glmtune(run_settings, work)}
            if peer:
                systems["llamafactory"] = lambda work=work_root / f"{shape}-{method}": run_llamafactory(peer, run_settings, work)
            for system, run in systems.items():
                (work_root / f"{shape}-{method}").mkdir(exist_ok=True)
                result = {"shape": shape, "method": method, **counts, **measure(system, run, args, counts, method, peaks)}
                report["runs"].append(result)
                print(json.dumps({k: v for k, v in result.items() if k != "losses"}), flush=True)
                shutil.rmtree(work_root / f"{shape}-{method}", ignore_errors=True)  # full fine-tunes save tens of GB
        shutil.rmtree(model_dir, ignore_errors=True)
    args.out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
