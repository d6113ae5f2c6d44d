"""Evaluation: generated answers scored by BLEU-4 and ROUGE-1/2/L, and accuracy tasks (mcq benchmarks, qa aliases)."""
