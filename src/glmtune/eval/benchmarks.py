"""Accuracy benchmarks from local files: C-Eval / CMMLU / MMLU folders for mcq, alias lists for qa.

The three multiple-choice layouts differ in small ways, all read here:
  C-Eval  dev/ val/ test/ folders of `<subject>_<split>.csv`, header `id,question,A,B,C,D,answer[,explanation]`
          (its test split has no answers: score val);
  MMLU    the same folders (optionally under data/) of headerless `question,A,B,C,D,answer` rows;
  CMMLU   dev/ test/ folders of `<subject>.csv`, header `,Question,A,B,C,D,Answer`.
Columns are found by header name when there is a header, so extra columns (ids, explanations) do not
matter. A malformed row fails with its file and line: nothing is skipped silently.
"""

import csv
import json
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from glmtune.errors import GlmtuneError

LETTERS = "ABCDEFGH"
# Sets shipped in glmtune/resources, chosen with --dataset NAME: general knowledge a fine-tune should keep.
BUNDLED = {"retention_mcq": "retention/mcq", "retention_qa": "retention/qa.json"}


@dataclass(frozen=True)
class Question:
    """One multiple-choice question; answer is the correct option's index (None where a split hides it)."""

    subject: str
    question: str
    options: tuple[str, ...]
    answer: int | None


@dataclass(frozen=True)
class OpenQuestion:
    """One qa question and every answer counted as right."""

    subject: str
    question: str
    aliases: tuple[str, ...]


def resolve_source(dataset: str) -> Path:
    """A path as given, else a bundled set by name."""
    path = Path(dataset).expanduser()
    if path.exists():
        return path
    if dataset in BUNDLED:
        return Path(str(files("glmtune") / "resources" / BUNDLED[dataset]))
    raise GlmtuneError(f"dataset {dataset!r}: no such file or folder, and no bundled set of that name ({', '.join(BUNDLED)})")


def split_files(root: Path, split: str) -> dict[str, Path]:
    """Subject -> CSV file of one split, from `root/split/` or MMLU's `root/data/split/`; {} when there is no such folder."""
    folder = next((candidate for candidate in (root / split, root / "data" / split) if candidate.is_dir()), None)
    if folder is None:
        return {}
    return {path.stem.removesuffix(f"_{split}"): path for path in sorted(folder.glob("*.csv"))}


def answer_index(value: str, count: int, where: str) -> int | None:
    letter = value.strip().upper()
    if not letter:
        return None
    if len(letter) != 1 or LETTERS.find(letter) not in range(count):
        raise GlmtuneError(f"{where}: answer {value!r} is not one of {LETTERS[:count]}")
    return LETTERS.index(letter)


def read_questions(path: Path, subject: str) -> list[Question]:
    """Questions of one CSV file, with or without a header row (MMLU has none)."""
    with path.open(encoding="utf-8-sig", newline="") as stream:
        rows = list(csv.reader(stream))
    if not rows:
        return []
    header = [cell.strip().lower() for cell in rows[0]]
    if "question" in header and "a" in header:
        columns = {name: index for index, name in enumerate(header)}
        option_columns = [columns[letter.lower()] for letter in LETTERS if letter.lower() in columns]
        question_column, answer_column, body, first_line = columns["question"], columns.get("answer"), rows[1:], 2
    else:
        option_columns = list(range(1, len(rows[0]) - 1))
        question_column, answer_column, body, first_line = 0, len(rows[0]) - 1, rows, 1
    if len(option_columns) < 2:
        raise GlmtuneError(f"{path}: found {len(option_columns)} option columns; a question needs at least A and B")
    questions = []
    for line, row in enumerate(body, start=first_line):
        where = f"{path}:{line}"
        if len(row) < len(header):
            raise GlmtuneError(f"{where}: {len(row)} columns, the file's first row has {len(header)}")
        answer = answer_index(row[answer_column], len(option_columns), where) if answer_column is not None else None
        options = tuple(row[column].strip() for column in option_columns)
        questions.append(Question(subject, row[question_column].strip(), options, answer))
    return questions


def load_mcq(dataset: str, split: str, n_shot: int) -> tuple[dict[str, list[Question]], dict[str, list[Question]]]:
    """(questions to score, solved dev examples) per subject; every scored question must have its answer."""
    root = resolve_source(dataset)
    scored = split_files(root, split)
    if not scored:
        raise GlmtuneError(f"{root}: no {split}/ folder of per-subject CSV files (C-Eval, CMMLU or MMLU layout)")
    dev = split_files(root, "dev") if n_shot else {}
    if n_shot and not dev:
        raise GlmtuneError(f"{root}: no dev/ folder for the {n_shot}-shot examples: add one, or use --n_shot 0")
    questions = {subject: read_questions(path, subject) for subject, path in scored.items()}
    hidden = [subject for subject, items in questions.items() if any(q.answer is None for q in items)]
    if hidden:
        raise GlmtuneError(
            f"{root}: the {split} split of {', '.join(hidden[:3])}{' ...' if len(hidden) > 3 else ''} has no answers "
            "(C-Eval hides its test answers): use --split val"
        )
    shots = {subject: read_questions(dev[subject], subject)[:n_shot] if subject in dev else [] for subject in questions}
    return questions, shots


def load_qa(dataset: str) -> list[OpenQuestion]:
    """A JSON list (or JSON Lines) of {"question", "answers": [aliases] or "answer", optional "subject"}."""
    path = resolve_source(dataset)
    text = path.read_text(encoding="utf-8")
    rows: list[Any] = json.loads(text) if path.suffix == ".json" else [json.loads(line) for line in text.splitlines() if line.strip()]
    questions = []
    for index, row in enumerate(rows):
        aliases = row.get("answers", row.get("answer"))
        aliases = [aliases] if isinstance(aliases, str) else aliases
        if not row.get("question") or not aliases or not all(isinstance(alias, str) and alias.strip() for alias in aliases):
            raise GlmtuneError(f"{path} row {index}: needs a question and answers (a list of non-empty strings)")
        questions.append(OpenQuestion(row.get("subject", "all"), row["question"], tuple(aliases)))
    if not questions:
        raise GlmtuneError(f"{path}: no questions")
    return questions
