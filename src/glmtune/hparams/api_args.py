"""Settings of `glmtune api`: where it listens, who may call it, and how much load it accepts."""

import os
from dataclasses import dataclass, field


@dataclass
class ApiArguments:
    host: str = field(
        default="127.0.0.1", metadata={"help": "Interface to bind; 0.0.0.0 exposes the server to the network."}
    )
    port: int = field(default=8000, metadata={"help": "TCP port."})
    api_key: str | None = field(
        default=None,
        metadata={"help": "Require `Authorization: Bearer KEY` (default: env GLMTUNE_API_KEY; empty: no auth)."},
    )
    allow_unauthenticated: bool = field(
        default=False,
        metadata={"help": "Serve a non-loopback host without an API key (refused otherwise: anyone reaching it could use it)."},
    )
    cors_origins: str | None = field(
        default=None, metadata={"help": "Comma-separated browser origins allowed by CORS; empty: CORS off."}
    )
    served_model_name: str | None = field(
        default=None, metadata={"help": "Model id clients send and /v1/models lists (default: the model's name)."}
    )
    max_batch_size: int = field(default=32, metadata={"help": "Most sequences decoded together in one step."})
    max_waiting: int = field(default=128, metadata={"help": "Most sequences queued; more are answered 429."})
    max_tokens_limit: int = field(default=4096, metadata={"help": "Largest max_tokens a request may ask for."})
    max_n: int = field(default=8, metadata={"help": "Largest n (choices per request)."})
    max_body_bytes: int = field(default=1_000_000, metadata={"help": "Largest request body; more is answered 413."})

    def __post_init__(self) -> None:
        # The key is better kept out of shell history and config files: the environment may hold it.
        self.api_key = self.api_key or os.environ.get("GLMTUNE_API_KEY") or None

    def origins(self) -> list[str]:
        return [origin.strip() for origin in (self.cors_origins or "").split(",") if origin.strip()]


def check_api(api_args: ApiArguments) -> list[str]:
    problems = []
    if not 0 <= api_args.port <= 65535:
        problems.append(f"port={api_args.port}: must be in 0..65535")
    for name in ("max_batch_size", "max_waiting", "max_tokens_limit", "max_n", "max_body_bytes"):
        if getattr(api_args, name) < 1:
            problems.append(f"{name}={getattr(api_args, name)}: must be at least 1")
    return problems
