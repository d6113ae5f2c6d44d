"""API load (issue 6): N concurrent streaming clients against `glmtune api` serving the default model.

Starts `glmtune api` as a subprocess on 127.0.0.1 with an OS-chosen port, serving the embedded
default model (smollm2-135m, loaded the way the CLI loads it). For each N, N clients each send
streaming chat requests back to back for `--window` seconds; requests in flight at the end of
the window run to completion (each is bounded by `--max-tokens`). Reported per N: requests/s,
completion tokens/s (from each stream's usage chunk), p50/p95 time to first token and total
latency, and errors (non-200 answers, error events, transport failures). Not part of the test
suite; loopback only.
The server runs with OMP_NUM_THREADS=`--threads` (default 1): on a CPU shared with other
work, two spinning OpenMP threads made single-stream decoding 4x slower than one thread.
Run: .venv/bin/python benchmarks/api_load.py [--clients 1,8,32,64] [--window 30] [--max-tokens 64] [--threads 1]
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

MODEL = "smollm2-135m"
PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain in two sentences what a neural network is.",
    "Give me three tips for learning a new language.",
    "What is 12 times 7?",
    "Name four planets of the solar system.",
]
STARTUP_TIMEOUT_S = 300


@dataclass
class Outcome:
    """What one load level measured."""

    clients: int
    seconds: float = 0.0
    tokens: int = 0
    first_token_s: list[float] = field(default_factory=list)
    latency_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def row(self) -> str:
        done = len(self.latency_s)
        return (
            f"| {self.clients} | {done} | {done / self.seconds:.2f} | {self.tokens / self.seconds:.1f} | "
            f"{percentile(self.first_token_s, 50):.2f} | {percentile(self.first_token_s, 95):.2f} | "
            f"{percentile(self.latency_s, 50):.2f} | {percentile(self.latency_s, 95):.2f} | {len(self.errors)} |"
        )


def percentile(values: list[float], share: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[share - 1]


def start_server(max_batch_size: int, threads: int, log_path: Path) -> tuple[subprocess.Popen, str]:
    """`glmtune api` on the default model; returns the process and its base URL once it listens."""
    command = [sys.executable, "-m", "glmtune", "api", "--host", "127.0.0.1", "--port", "0",
               "--max_batch_size", str(max_batch_size), "--max_waiting", "256"]
    print(f"server: OMP_NUM_THREADS={threads} python", " ".join(command[1:]), flush=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(threads)}
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline and process.poll() is None:
        for line in log_path.read_text().splitlines():
            if "Uvicorn running on" in line:
                return process, line.split("running on ")[1].split()[0]
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"glmtune api did not start; log:\n{log_path.read_text()[-3000:]}")


async def one_request(
    http: httpx.AsyncClient, url: str, prompt: str, seed: int, max_tokens: int, outcome: Outcome
) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0.7,
        "seed": seed,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    first: float | None = None
    tokens = 0
    try:
        async with http.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                outcome.errors.append(f"HTTP {response.status_code}: {(await response.aread())[:200]!r}")
                return
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[6:])
                if "error" in event:
                    outcome.errors.append(event["error"]["message"])
                    return
                if first is None and any(choice["delta"].get("content") for choice in event.get("choices", [])):
                    first = time.perf_counter() - started
                if event.get("usage"):
                    tokens = event["usage"]["completion_tokens"]
    except httpx.HTTPError as error:
        outcome.errors.append(f"{type(error).__name__}: {error}")
        return
    outcome.tokens += tokens
    outcome.first_token_s.append(first if first is not None else time.perf_counter() - started)
    outcome.latency_s.append(time.perf_counter() - started)


async def load_level(url: str, clients: int, window_s: float, max_tokens: int) -> Outcome:
    """`clients` concurrent loops of back-to-back requests, started for `window_s` seconds."""
    outcome = Outcome(clients)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=httpx.Timeout(600.0), limits=limits) as http:
        began = time.perf_counter()

        async def client_loop(index: int) -> None:
            sent = 0
            while time.perf_counter() - began < window_s:
                prompt = PROMPTS[(index + sent) % len(PROMPTS)]
                await one_request(http, url, prompt, seed=index * 1000 + sent, max_tokens=max_tokens, outcome=outcome)
                sent += 1

        await asyncio.gather(*(client_loop(index) for index in range(clients)))
        outcome.seconds = time.perf_counter() - began
    return outcome


def machine() -> str:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
    model_name = next((line.split(":", 1)[1].strip() for line in lscpu if line.startswith("Model name")), "unknown")
    return f"nproc {os.cpu_count()}; lscpu model: {model_name}; load average before: {os.getloadavg()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1,8,32,64", help="comma-separated concurrency levels")
    parser.add_argument("--window", type=float, default=30.0, help="seconds each level keeps sending new requests")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the server process")
    args = parser.parse_args()
    levels = [int(count) for count in args.clients.split(",")]
    if max(levels) > 128 or args.window > 120:
        parser.error("keep it bounded: at most 128 clients and a 120 s window")
    print(machine(), flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        process, url = start_server(args.max_batch_size, args.threads, Path(scratch) / "server.log")
        try:
            asyncio.run(load_level(url, 1, 0.0, 8))  # warm-up: one short request
            outcomes = []
            for clients in levels:
                outcome = asyncio.run(load_level(url, clients, args.window, args.max_tokens))
                outcomes.append(outcome)
                summary = f"{len(outcome.latency_s)} requests, {outcome.tokens} tokens in {outcome.seconds:.1f} s"
                errors = f"{len(outcome.errors)} errors {outcome.errors[:3]}"
                print(f"N={clients}: {summary}, {errors}; load average {os.getloadavg()}", flush=True)
        finally:
            process.terminate()
            process.wait(timeout=60)
    print("\n| clients N | requests | requests/s | tokens/s | TTFT p50 s | TTFT p95 s "
          "| latency p50 s | latency p95 s | errors |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for outcome in outcomes:
        print(outcome.row())
    rates = {outcome.clients: outcome.tokens / outcome.seconds for outcome in outcomes}
    if 1 in rates and 32 in rates:
        print(f"\ntokens/s at N=32 / N=1: {rates[32] / rates[1]:.2f}x (goal >= 4x); "
              f"errors: {sum(len(outcome.errors) for outcome in outcomes)} (goal 0)")


if __name__ == "__main__":
    main()
