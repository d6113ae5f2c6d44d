"""BLEU-4 and ROUGE-1/2/L F-scores of predictions against labels, in Chinese and English.

Tokens: text holding any CJK character is cut into words by jieba; other text into words
and punctuation marks (`\\w+` runs and single symbols). BLEU and ROUGE both score these same
tokens, so the two metrics measure the same units in every language and a BLEU-4 on
Chinese means 4-word matches, as it does in English. ChatGLM Efficient Tuning scored BLEU
on single characters (and ROUGE on jieba words); on English that turns BLEU-4 into
character 4-grams, which rewards misspelt near-words, so glmtune's BLEU-4 is lower than
theirs for the same Chinese output and not comparable on English.

Scores are computed per sample (BLEU with nltk's smoothing method 3, as ChatGLM Efficient
Tuning does, so one missing 4-gram does not zero a sample) and averaged, x100.
"""

import importlib.util
import logging
import re
from collections.abc import Sequence

from glmtune.errors import GlmtuneError

METRIC_NAMES = ("bleu-4", "rouge-1", "rouge-2", "rouge-l")
METRIC_PACKAGES = {"jieba": "jieba", "rouge-chinese": "rouge_chinese", "nltk": "nltk"}  # distribution -> module
CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
WORD_OR_SYMBOL = re.compile(r"\w+|[^\w\s]")


def check_metrics_installed() -> None:
    """The metrics packages are an optional extra: say how to install them before any model loads."""
    missing = [name for name, module in METRIC_PACKAGES.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise GlmtuneError(f"scoring predictions needs {', '.join(missing)}: pip install 'glmtune[metrics]'")


def tokenize(text: str) -> list[str]:
    """jieba words for text with Chinese characters, else words and punctuation; never whitespace."""
    if CJK.search(text):
        import jieba

        jieba.setLogLevel(logging.WARNING)  # silences "Building prefix dict ..." on first use
        return [token for token in jieba.cut(text) if token.strip()]
    return WORD_OR_SYMBOL.findall(text)


def bleu4(prediction: list[str], label: list[str]) -> float:
    """Sentence BLEU-4 in [0, 1]; an empty prediction or label scores 0."""
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    if not prediction or not label:
        return 0.0
    return float(sentence_bleu([label], prediction, smoothing_function=SmoothingFunction().method3))


def rouge_f(prediction: list[str], label: list[str]) -> dict[str, float]:
    """ROUGE-1/2/L F-scores in [0, 1] from rouge-chinese (distinct n-grams, LCS for L)."""
    from rouge_chinese import Rouge

    if not prediction or not label:  # rouge-chinese raises on empty text
        return {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}
    scores = Rouge().get_scores(" ".join(prediction), " ".join(label))[0]
    return {name: float(scores[name]["f"]) for name in ("rouge-1", "rouge-2", "rouge-l")}


def sample_scores(prediction: str, label: str) -> dict[str, float]:
    """All four metrics of one sample, in [0, 1]."""
    predicted, expected = tokenize(prediction), tokenize(label)
    return {"bleu-4": bleu4(predicted, expected), **rouge_f(predicted, expected)}


def corpus_scores(predictions: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    """Mean per-sample scores, x100 and rounded to 4 places, as ChatGLM Efficient Tuning reports them."""
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
    if not predictions:
        return {name: 0.0 for name in METRIC_NAMES}
    totals = dict.fromkeys(METRIC_NAMES, 0.0)
    for prediction, label in zip(predictions, labels):
        for name, value in sample_scores(prediction, label).items():
            totals[name] += value
    return {name: round(100 * total / len(predictions), 4) for name, total in totals.items()}
