"""The one row schema every converter produces and every preprocessor consumes.

Converters (alpaca, sharegpt, custom keys, pairwise, KTO, text) are pure functions
`row -> Example`; templates and preprocessing never see a source format.
"""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, TypedDict

ROLES = ("user", "assistant", "observation", "function")
IGNORE_INDEX = -100  # the label of a token that carries no loss: cross-entropy skips it
# A label-aligned column of replayed rows: per position, the starting model's log-probabilities of the tokens
# training holds back there (train/restraint.py); UNRESTRAINED where none is held.
REFERENCE_LOGPS = "reference_logps"
UNRESTRAINED = float("inf")
USER_SIDE = ("user", "observation")  # what the model answers: even positions
ASSISTANT_SIDE = ("assistant", "function")  # what the model says: odd positions


class Message(TypedDict):
    role: str  # one of ROLES; user/observation take user positions, assistant/function assistant positions
    content: str


class MisplacedRole(NamedTuple):
    """The first message out of turn; callers word the error for their own readers."""

    index: int  # counted in the whole conversation, a leading system message included
    expected: tuple[str, ...]
    got: str | None


def misplaced_role(messages: Sequence[Message], offset: int = 0) -> MisplacedRole | None:
    """The one role-order rule: user-side roles at even positions, assistant-side roles at odd ones.

    `offset` is the number of messages before `messages` (a leading system message),
    so the index reported is the one the user sees in their data.
    """
    for index, message in enumerate(messages):
        expected = USER_SIDE if index % 2 == 0 else ASSISTANT_SIDE
        if message.get("role") not in expected:
            return MisplacedRole(index + offset, expected, message.get("role"))
    return None


class Example(TypedDict, total=False):
    """One training example; fields not used by a stage are None.

    messages: alternating turns starting with a user-side turn; for sft it ends on an
        assistant-side turn; for pairwise/KTO data it ends on a user-side turn and the
        answers are in chosen/rejected (or the last assistant turn with kto_tag).
    system: system prompt or None (the template's default then applies).
    tools: tool descriptions (JSON text) or None.
    chosen / rejected: the preferred and dispreferred final assistant turns (rm, dpo).
    kto_tag: True for a desirable answer, False for an undesirable one (KTO).
    text: raw text for pre-training (stage pt); messages is empty then.
    source: where the row came from, e.g. "data/x.jsonl:17", for error messages.
    """

    messages: list[Message]
    system: str | None
    tools: str | None
    chosen: Message | None
    rejected: Message | None
    kto_tag: bool | None
    text: str | None
    source: str


class RowError(ValueError):
    """A problem with one input row; the message starts with its location (file:line or file[index])."""


@dataclass
class LoadReport:
    """Counts for the run summary: nothing is dropped without being counted here."""

    read: int = 0
    kept: int = 0
    truncated: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    examples: dict[str, list[str]] = field(default_factory=dict)  # reason -> first few locations

    def skip(self, reason: str, location: str) -> None:
        self.skipped[reason] += 1
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < 3:
            self.examples[reason].append(location)

    def merge(self, other: "LoadReport") -> None:
        self.read += other.read
        self.kept += other.kept
        self.truncated += other.truncated
        self.skipped.update(other.skipped)
        for reason, locations in other.examples.items():
            mine = self.examples.setdefault(reason, [])
            mine.extend(locations[: max(0, 3 - len(mine))])

    def summary(self) -> str:
        parts = [f"{self.read} rows read", f"{self.kept} kept", f"{self.truncated} truncated"]
        for reason, count in self.skipped.most_common():
            where = ", ".join(self.examples.get(reason, []))
            parts.append(f"{count} skipped: {reason} (e.g. {where})")
        return "; ".join(parts)
