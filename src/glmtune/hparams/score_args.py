"""Settings of `glmtune score`: what to score with a trained reward model."""

from dataclasses import dataclass, field


@dataclass
class ScoreArguments:
    prompt: str | None = field(default=None, metadata={"help": "A user message; with response, scores that answer."})
    response: str | None = field(default=None, metadata={"help": "The answer to the prompt to score."})
    batch_size: int = field(default=8, metadata={"help": "Sequences scored together."})
