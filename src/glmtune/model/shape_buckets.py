"""Sequence lengths rounded up to a few fixed sizes, because CPU kernels keep memory for every size they meet.

On a CPU in bf16, PyTorch's attention backward keeps about 7 MB for every sequence length it has
seen and never frees it, and oneDNN caches compiled matrix-product kernels for every new row count
(about 1.6 MB each, up to its cache's capacity). Training on padding-free micro-batches meets a new
length almost every step: the peak memory of a 60-step LoRA run of the default model grew from 1.7 to
3.0 GB. Padding to a bucketed length costs a little compute and bounds the number of sizes.
"""


def bucketed_length(tokens: int, per_doubling: int, smallest_step: int = 1) -> int:
    """`tokens` rounded up to one of `per_doubling` (a power of two) sizes between each power of two and the
    next, and to a multiple of `smallest_step`."""
    step = max(smallest_step, 2 ** max(0, tokens.bit_length() - per_doubling.bit_length()))
    return -(-tokens // step) * step
