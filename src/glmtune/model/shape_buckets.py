"""Sequence lengths rounded up to a few fixed sizes, because CPU kernels keep memory for every size they meet.

On a CPU in bf16, PyTorch's attention backward keeps about 7 MB for every sequence length it has
seen and never frees it (per-row attention therefore runs in fp32: model/segment_attention.py), and
oneDNN caches compiled matrix-product kernels for every new row count (about 0.8 MB per kernel, up to
its cache's capacity). Training on padding-free micro-batches meets a new length almost every step:
the peak memory of a 60-step LoRA run of the default model grew from 1.7 to 3.0 GB. Padding to a
bucketed length costs a little compute and bounds the number of sizes.
"""

# A micro-batch's length (train/micro_batches.py) is rounded up to one of this many sizes per doubling:
# at most 1/8 more tokens through the matrix products.
MICRO_BATCH_BUCKETS_PER_DOUBLING = 8

# Each row's attention runs at a bucketed length (model/segment_attention.py): multiples of 32 up to 256
# tokens, then four sizes per doubling; padding is cheap next to a row's matrix products. Rows at their
# exact lengths ran 5% faster, but the peak of a 40-step LoRA run of the default model grew by 300 MB.
ATTENTION_BUCKETS_PER_DOUBLING = 4
ATTENTION_SMALLEST_STEP = 32

# oneDNN's kernel cache (1024 entries by default) is bounded to this many entries (cli.py sets it): on the
# default model a LoRA run peaked 6% lower at 64 and ran no slower, the padded lengths revisiting few shapes.
ONEDNN_KERNEL_CACHE = 64


def bucketed_length(tokens: int, per_doubling: int, smallest_step: int = 1) -> int:
    """`tokens` rounded up to one of `per_doubling` (a power of two) sizes between each power of two and the
    next, and to a multiple of `smallest_step`."""
    step = max(smallest_step, 2 ** max(0, tokens.bit_length() - per_doubling.bit_length()))
    return -(-tokens // step) * step


def attention_length(tokens: int) -> int:
    """The length a row of `tokens` tokens runs its attention at (model/segment_attention.py)."""
    return bucketed_length(tokens, ATTENTION_BUCKETS_PER_DOUBLING, ATTENTION_SMALLEST_STEP)
