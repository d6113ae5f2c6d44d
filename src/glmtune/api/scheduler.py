"""Continuous batching: one worker thread owns the model and serves all requests in shared decode steps.

At every step the worker admits waiting sequences while the batch has room (prefilling each
prompt on its own, then merging its KV cache into the batch's with left padding), runs ONE
forward pass over the last token of every active sequence, samples each row with its own
settings, streams text out, and retires finished or cancelled rows. A short request thus
starts as soon as there is room instead of waiting behind a long one.

transformers' own ContinuousBatchingManager runs on CPU, but it draws every row from one
global random generator (no per-request seed), fixes greedy-or-sampling per manager, and
drops custom logits processors such as `GreedyOnInvalidLogits`; hence this scheduler.
"""

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from glmtune.api.sampler import (
    SamplingParams,
    adjust_logits,
    penalize_repeats,
    sample_next_tokens,
)
from glmtune.chat.streaming import TextPieceStreamer

logger = logging.getLogger(__name__)


class QueueFull(Exception):
    """The waiting queue cannot take the request now; the client should retry later."""


# One generated token's log-probability and the most likely alternatives: (token id, logprob, [(id, logprob), ...]).
TokenLogprob = tuple[int, float, list[tuple[int, float]]]


@dataclass
class GenerationJob:
    """One sequence to generate: its prompt, its limits and settings, and where its text goes."""

    prompt: list[int]
    max_new_tokens: int
    sampling: SamplingParams
    streamer: TextPieceStreamer
    generated: list[int] = field(default_factory=list)
    finish_reason: str | None = None  # "stop", "length" or "cancelled" once done
    cancelled: threading.Event = field(default_factory=threading.Event)
    top_logprobs: int | None = None  # None: no log-probabilities; else how many alternatives per token
    logprobs: list[TokenLogprob] = field(default_factory=list)  # one per generated token but stop tokens

    def cancel(self) -> None:
        """Ask the worker to drop this sequence at its next step (client gone)."""
        self.cancelled.set()

    @property
    def history(self) -> list[int]:
        return self.prompt + self.generated


class Batch:
    """The active rows and their shared, left-padded KV cache, attention mask and next positions."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.jobs: list[GenerationJob] = []
        self.cache: DynamicCache | None = None
        self.mask = torch.zeros(0, 0, dtype=torch.long)
        self.positions = torch.zeros(0, dtype=torch.long)

    def add(self, job: GenerationJob, cache: DynamicCache) -> None:
        """Append one prefilled sequence, left-padding the batch or the newcomer to a common length."""
        length = len(job.prompt)
        device = cache.layers[0].keys.device
        row_mask = torch.ones(1, length, dtype=torch.long, device=device)
        if self.cache is None:
            self.cache, self.mask = cache, row_mask
        else:
            width = self.mask.shape[1]
            total = max(width, length)
            for batch_layer, new_layer in zip(self.cache.layers, cache.layers):
                batch_layer.keys = torch.cat(
                    [left_pad(batch_layer.keys, total - width), left_pad(new_layer.keys, total - length)]
                )
                batch_layer.values = torch.cat(
                    [left_pad(batch_layer.values, total - width), left_pad(new_layer.values, total - length)]
                )
            self.mask = torch.cat([F.pad(self.mask, (total - width, 0)), F.pad(row_mask, (total - length, 0))])
        self.positions = torch.cat([self.positions.to(device), torch.tensor([length], device=device)])
        self.jobs.append(job)

    def keep(self, keep_rows: list[int]) -> None:
        """Drop every other row, then the leading columns no remaining row attends to."""
        if len(keep_rows) == len(self.jobs):
            return
        if not keep_rows:
            self.clear()
            return
        index = torch.tensor(keep_rows, device=self.mask.device)
        self.cache.batch_select_indices(index)
        self.jobs = [self.jobs[row] for row in keep_rows]
        self.mask, self.positions = self.mask[index], self.positions[index]
        start = int(self.mask.any(dim=0).int().argmax())
        if start:
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[:, :, start:], layer.values[:, :, start:]
            self.mask = self.mask[:, start:]


def left_pad(states: torch.Tensor, count: int) -> torch.Tensor:
    """Pad [batch, heads, length, dim] key or value states with `count` zero positions in front."""
    return F.pad(states, (0, 0, count, 0)) if count else states


class Scheduler:
    """A bounded waiting queue in front of one worker thread that batches every decode step."""

    def __init__(self, model: torch.nn.Module, safety: Callable, max_batch_size: int, max_waiting: int) -> None:
        self.model = model
        self.safety = safety  # ChatModel.safety_processors(): NaN/inf logits decode greedily instead of crashing
        self.max_batch_size = max_batch_size
        self.max_waiting = max_waiting
        self.waiting: deque[GenerationJob] = deque()
        self.batch = Batch()
        self.largest_batch = 0  # most rows ever decoded together: shows that requests really share steps
        self.condition = threading.Condition()
        self.stopping = False
        self.worker = threading.Thread(target=self.run, name="glmtune-scheduler", daemon=True)

    @property
    def active_count(self) -> int:
        return len(self.batch.jobs)

    @property
    def waiting_count(self) -> int:
        return len(self.waiting)

    def start(self) -> None:
        self.worker.start()

    def stop(self) -> None:
        with self.condition:
            self.stopping = True
            self.condition.notify()
        self.worker.join()

    def submit(self, jobs: list[GenerationJob]) -> None:
        """Queue all jobs of one request, or none of them when the queue lacks room."""
        with self.condition:
            if len(self.waiting) + len(jobs) > self.max_waiting:
                raise QueueFull(f"{len(self.waiting)} requests are waiting (limit {self.max_waiting}); retry later")
            self.waiting.extend(jobs)
            self.condition.notify()

    def run(self) -> None:
        while True:
            with self.condition:
                while not (self.stopping or self.waiting or self.batch.jobs):
                    self.condition.wait()
                if self.stopping:
                    break
                room = self.max_batch_size - len(self.batch.jobs)
                admitted = [self.waiting.popleft() for _ in range(min(room, len(self.waiting)))]
            try:
                self.step(admitted)
            except Exception as error:  # one failed step fails its rows; the server keeps serving
                logger.exception("generation step failed")
                for job in [*admitted, *self.batch.jobs]:
                    if job.finish_reason is None:
                        job.finish_reason = "error"
                        job.streamer.fail(error)
                self.batch.clear()
        for job in [*self.waiting, *self.batch.jobs]:
            self.finish(job, "cancelled")

    def step(self, admitted: list[GenerationJob]) -> None:
        with torch.inference_mode():
            for job in admitted:
                if not job.cancelled.is_set():
                    self.prefill(job)
                elif job.finish_reason is None:
                    self.finish(job, "cancelled")
            self.retire()
            if self.batch.jobs:
                self.largest_batch = max(self.largest_batch, len(self.batch.jobs))
                self.decode()
                self.retire()

    def prefill(self, job: GenerationJob) -> None:
        """Run the prompt alone, sample its first token, and merge its cache into the batch."""
        input_ids = torch.tensor([job.prompt], device=self.model.device)
        output = self.model(input_ids=input_ids, use_cache=True, logits_to_keep=1)
        job.streamer.put(input_ids)  # like generate(), show the streamer the prompt first
        self.accept([job], output.logits[:, -1])
        if job.finish_reason is None:
            self.batch.add(job, output.past_key_values)

    def decode(self) -> None:
        """One forward pass over the last token of every active row."""
        batch = self.batch
        last_tokens = torch.tensor([[job.generated[-1]] for job in batch.jobs], device=batch.mask.device)
        batch.mask = torch.cat([batch.mask, torch.ones_like(last_tokens)], dim=1)
        output = self.model(
            input_ids=last_tokens,
            attention_mask=batch.mask,
            position_ids=batch.positions[:, None],
            past_key_values=batch.cache,
            use_cache=True,
        )
        batch.positions = batch.positions + 1
        self.accept(batch.jobs, output.logits[:, -1])

    def accept(self, jobs: list[GenerationJob], logits: torch.Tensor) -> None:
        """Sample one token per job, stream it, and finish jobs that hit a stop or their length.

        Log-probabilities are those of the adjusted logits (penalties and biases applied),
        before temperature, top-k and top-p reshape them for sampling.
        """
        params = [job.sampling for job in jobs]
        logits = self.safety(torch.empty(0, dtype=torch.long), logits.float())
        if any(setting.repetition_penalty != 1.0 for setting in params):
            logits = penalize_repeats(logits, [job.history for job in jobs], params)
        if any(setting.adjusts_logits for setting in params):
            logits = adjust_logits(logits, [job.generated for job in jobs], params)
        logprobs = log_probabilities(jobs, logits)
        for row, (job, token) in enumerate(zip(jobs, sample_next_tokens(logits, params).tolist())):
            if row in logprobs and token not in job.streamer.stop_token_ids:
                job.logprobs.append(logprobs[row](token))  # before the text goes out: the API pairs them
            job.generated.append(token)
            job.streamer.put(torch.tensor([token]))
            if job.streamer.stopped:
                self.finish(job, "stop")
            elif len(job.generated) >= job.max_new_tokens:
                self.finish(job, "length")

    def retire(self) -> None:
        for job in self.batch.jobs:
            if job.cancelled.is_set() and job.finish_reason is None:
                self.finish(job, "cancelled")
        self.batch.keep([row for row, job in enumerate(self.batch.jobs) if job.finish_reason is None])

    @staticmethod
    def finish(job: GenerationJob, reason: str) -> None:
        job.finish_reason = reason
        job.streamer.end()


def log_probabilities(jobs: list[GenerationJob], logits: torch.Tensor) -> dict[int, Callable[[int], TokenLogprob]]:
    """For each row that asks for them: the record of whichever token that row then samples."""
    rows = [row for row, job in enumerate(jobs) if job.top_logprobs is not None]
    if not rows:
        return {}
    table = logits[rows].float().log_softmax(dim=-1)
    width = min(max(jobs[row].top_logprobs for row in rows), table.shape[-1])
    best_values, best_ids = table.topk(width, dim=-1) if width else (table[:, :0], table[:, :0].long())
    records = {}
    for place, row in enumerate(rows):
        count = jobs[row].top_logprobs
        top = list(zip(best_ids[place, :count].tolist(), best_values[place, :count].tolist()))
        records[row] = lambda token, place=place, top=top: (token, float(table[place, token]), top)
    return records


def supports_batching(model: torch.nn.Module) -> bool:
    """Left-padded merging needs plain growing KV layers (no sliding window or recurrent state)."""
    cache = DynamicCache(config=model.config)
    return all(type(layer) is DynamicLayer for layer in cache.layers)
