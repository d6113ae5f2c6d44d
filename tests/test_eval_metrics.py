"""BLEU-4 and ROUGE-1/2/L against numbers worked out by hand (not by running the code).

BLEU-4 (nltk sentence_bleu, smoothing method 3): the geometric mean of the clipped n-gram
precisions p1..p4 times the brevity penalty BP = exp(1 - r/c) when the prediction (c tokens)
is shorter than the label (r tokens). Method 3 replaces the k-th zero precision by
1 / (2^k x its denominator). ROUGE (rouge-chinese): n-gram overlap on distinct n-grams,
F = 2PR / (P + R); ROUGE-L from the longest common subsequence, P = LCS/c, R = LCS/r.
Every figure is reported x100.
"""

import pytest

from glmtune.eval.metrics import corpus_scores, sample_scores, tokenize

CLOSE = {"abs": 1e-3}


def x100(scores: dict[str, float]) -> dict[str, float]:
    return {name: 100 * value for name, value in scores.items()}


def test_english_splits_words_and_punctuation():
    assert tokenize("Hello, world! The cat sat.") == ["Hello", ",", "world", "!", "The", "cat", "sat", "."]


def test_chinese_splits_into_jieba_words():
    assert tokenize("我喜欢吃苹果") == ["我", "喜欢", "吃", "苹果"]
    assert tokenize("北京是中国的首都") == ["北京", "是", "中国", "的", "首都"]


def test_english_one_word_substituted():
    # label: the cat sat on the mat (6), prediction: the cat sat on a mat (6), BP = 1
    # p1 = 5/6 (a misses), p2 = 3/5 (the cat, cat sat, sat on), p3 = 2/4, p4 = 1/3
    # BLEU = (5/6 * 3/5 * 2/4 * 1/3)^(1/4) = (1/12)^(1/4) = 0.537285 -> 53.7285
    # ROUGE-1: distinct prediction {the cat sat on a mat} 6, label {the cat sat on mat} 5, shared 5
    #          P = 5/6, R = 1, F = 10/11 = 90.9091
    # ROUGE-2: 5 distinct bigrams each, 3 shared: F = 3/5 = 60.0
    # ROUGE-L: LCS "the cat sat on mat" = 5, P = R = 5/6: 83.3333
    scores = x100(sample_scores("the cat sat on a mat", "the cat sat on the mat"))
    assert scores == pytest.approx({"bleu-4": 53.7285, "rouge-1": 90.9091, "rouge-2": 60.0, "rouge-l": 83.3333}, **CLOSE)


def test_english_short_answer_pays_the_brevity_penalty():
    # label: Paris is the capital of France (6), prediction: Paris (1)
    # p1 = 1/1; no bigram, trigram or 4-gram (denominator 1): 1/2, 1/4, 1/8 after smoothing
    # (1 * 1/2 * 1/4 * 1/8)^(1/4) = 2^(-1.5) = 0.353553; BP = exp(1 - 6/1) = e^-5 = 0.0067379
    # BLEU = 0.0023823 -> 0.23823
    # ROUGE-1: P = 1, R = 1/6, F = 2/7 = 28.5714; ROUGE-2: the prediction has no bigram: 0
    # ROUGE-L: LCS 1, P = 1, R = 1/6: 28.5714
    scores = x100(sample_scores("Paris", "Paris is the capital of France"))
    assert scores == pytest.approx({"bleu-4": 0.23823, "rouge-1": 28.5714, "rouge-2": 0.0, "rouge-l": 28.5714}, **CLOSE)


def test_chinese_last_word_wrong():
    # label: 我 喜欢 吃 苹果, prediction: 我 喜欢 吃 香蕉 (4 words each), BP = 1
    # p1 = 3/4, p2 = 2/3, p3 = 1/2, p4 = 0/1 -> 1/2 (first zero, k = 1)
    # BLEU = (3/4 * 2/3 * 1/2 * 1/2)^(1/4) = (1/8)^(1/4) = 0.594604 -> 59.4604
    # ROUGE-1 = 3/4 = 75.0; ROUGE-2 = 2/3 = 66.6667; ROUGE-L: LCS 3 of 4 = 75.0
    scores = x100(sample_scores("我喜欢吃香蕉", "我喜欢吃苹果"))
    assert scores == pytest.approx({"bleu-4": 59.4604, "rouge-1": 75.0, "rouge-2": 66.6667, "rouge-l": 75.0}, **CLOSE)


def test_chinese_word_left_out():
    # label: 北京 是 中国 的 首都 (5), prediction: 北京 是 中国 首都 (4)
    # p1 = 4/4, p2 = 2/3 (北京是, 是中国), p3 = 1/2 (北京是中国), p4 = 0/1 -> 1/2
    # (1 * 2/3 * 1/2 * 1/2)^(1/4) = (1/6)^(1/4) = 0.638943; BP = exp(1 - 5/4) = 0.778801
    # BLEU = 0.497609 -> 49.7609
    # ROUGE-1: P = 4/4, R = 4/5, F = 8/9 = 88.8889; ROUGE-2: P = 2/3, R = 2/4, F = 4/7 = 57.1429
    # ROUGE-L: LCS 4, P = 1, R = 4/5: 88.8889
    scores = x100(sample_scores("北京是中国首都", "北京是中国的首都"))
    assert scores == pytest.approx({"bleu-4": 49.7609, "rouge-1": 88.8889, "rouge-2": 57.1429, "rouge-l": 88.8889}, **CLOSE)


def test_exact_and_empty_answers():
    assert x100(sample_scores("法国的首都是巴黎。", "法国的首都是巴黎。")) == pytest.approx(
        {"bleu-4": 100.0, "rouge-1": 100.0, "rouge-2": 100.0, "rouge-l": 100.0}, **CLOSE
    )
    assert sample_scores("", "Paris") == {"bleu-4": 0.0, "rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}


def test_corpus_scores_average_the_samples():
    # the mean of the two Chinese samples above: BLEU (59.4604 + 49.7609) / 2 = 54.6107,
    # ROUGE-1 (75 + 88.8889) / 2 = 81.9444, ROUGE-2 (66.6667 + 57.1429) / 2 = 61.9048, ROUGE-L 81.9444
    scores = corpus_scores(["我喜欢吃香蕉", "北京是中国首都"], ["我喜欢吃苹果", "北京是中国的首都"])
    assert scores == pytest.approx({"bleu-4": 54.6107, "rouge-1": 81.9444, "rouge-2": 61.9048, "rouge-l": 81.9444}, **CLOSE)
