"""Evaluation: predict with generate over a dataset, then BLEU-4 and ROUGE-1/2/L against the labels."""
