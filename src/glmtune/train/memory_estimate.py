"""Predicted peak memory per device of a supervised training run, itemised, from shapes and counts alone.

Every term is a count of tensors a training step keeps, times their element size; nothing is
fitted to a particular run. The terms, for a decoder of L layers, hidden size h, MLP size f,
query width q, key/value width kv and T tokens per forward pass (a micro-batch, or the padded batch):

- weights: frozen base weights in their dtype; 4/8-bit ones at bitsandbytes' size (4-bit: half a
  byte plus one fp32 absmax per 64 weights, or with double quantization one byte per 64 and one fp32
  per 16,384). On a CPU the checkpoint file is memory-mapped: weights kept in the file's dtype are
  its pages, and the pages of the weights that were quantized stay resident while it is mapped.
- trainable parameters, gradients (fp32, as glmtune trains them) and optimizer state (AdamW: two
  fp32 moments; 8-bit optimizers two bytes), divided over the devices by ZeRO stages 1/2/3.
- activations, per token and layer on the autograd path (the layers at and after the first one that
  trains): both RMSNorm inputs in fp32 (8h bytes), the inputs of the linear layers (under autocast
  over fp32 weights each of q/k/v/gate/up casts its own copy: 5h elements, else 2h shared ones; plus
  o's q and down's f; bitsandbytes layers keep 2h + q + f in their compute dtype, the weights' load
  dtype, beside the 5h copies of LoRA's autocast adapters), attention's q, k, v and output (2q + 2kv), the MLP's gate, activation and up
  outputs (3f), and the layer's output kept for output_hidden_states (h, in the residual dtype).
  Trainable norms also keep their normalised inputs (2h). With gradient checkpointing a layer keeps
  only its input, and one layer's activations exist again during its recomputation. Eager attention
  keeps heads x T scores per token.
- autocast copies: under bf16/fp16 autocast over fp32 weights, every linear weight on the autograd
  path is cast once per forward and the low-precision copy is kept for backward. An adapter run
  holds its frozen linear weights in the compute dtype instead (model/frozen_weights.py): they count
  at that size among the weights, and autocast copies only the adapters.
- the output head: glmtune's chunked head (train/chunked_head.py) holds one chunk of fp32 logits,
  their log-softmax and gradient at a time (3 x CHUNK_ELEMENTS floats) and the hidden-state
  gradients; a head that transforms its logits materialises all T x vocab of them, three times.
- optimizer step: AdamW's foreach update allocates one fp32 buffer the size of the trainable
  weights (the square root of the second moment) after activations are freed; the peak is the larger
  of the backward pass and the step.
- kernel caches (CPU under bf16 autocast): PyTorch's attention backward keeps about 7.5 MB for every
  sequence length it meets (microbenchmark on the default model's 9 x 64 heads: 120 lengths, +986 MB),
  and oneDNN about 0.8 MB per cached matrix-product kernel. glmtune bounds both: a row's attention runs
  at one of a few bucketed lengths (model/shape_buckets.py), counted up to T, and oneDNN keeps
  ONEDNN_KERNEL_CACHE kernels. fp32 runs keep neither (their peak stayed flat over 60 steps).
- framework: on a CPU the process itself (Python with torch, transformers, PEFT, TRL and datasets
  imported measured 495 MB RSS with torch 2.13; tokenizer, dataset and trainer add about 100 MB),
  on a GPU the CUDA context and kernels (not in torch's allocator figures).
"""

from dataclasses import asdict, dataclass, field, replace

from glmtune.model.shape_buckets import (
    MICRO_BATCH_BUCKETS_PER_DOUBLING,
    ONEDNN_KERNEL_CACHE,
    bucketed_length,
)
from glmtune.train.chunked_head import CHUNK_ELEMENTS

MIB = 1 << 20
GIB = 1 << 30
CPU_FRAMEWORK_BYTES = 600 * MIB
CUDA_FRAMEWORK_BYTES = 600 * MIB
FP32 = 4
QUANT_BLOCK = 64  # bitsandbytes' 4-bit block size: one absmax per 64 weights
DOUBLE_QUANT_BLOCK = 256  # with double quantization: 8-bit absmaxes, one fp32 constant per 256 of them
HEAD_COPIES = 3  # logits, their log-softmax, their gradient
ATTENTION_BACKWARD_BYTES_PER_LENGTH = 7.5 * MIB  # kept by PyTorch's CPU attention backward per sequence length (bf16)
ONEDNN_KERNEL_BYTES = 0.8 * MIB  # one cached oneDNN matrix-product kernel (bf16, measured on the default model's shapes)


@dataclass(frozen=True)
class ModelCounts:
    """What the estimate needs to know about a model: shapes from its config, element counts from its parameters."""

    num_layers: int
    hidden_size: int
    intermediate_size: int
    query_width: int
    kv_width: int
    num_heads: int
    vocab_size: int
    total_params: int  # every parameter of the trainable model, quantized ones at their unquantized count
    trainable_params: int
    quantized_params: int  # base weights held in quantization_bit bits
    path_layers: int  # layers on the autograd path: at and after the first layer that trains
    path_linear_params: int  # non-quantized linear weights on that path (autocast copies them)
    held_linear_params: int  # frozen linear weights (and biases) an adapter run may hold in the compute dtype
    path_held_linear_params: int  # those of them on the autograd path
    trains_norms: bool
    plain_head: bool  # a bias-free linear head without logit transforms: glmtune's chunked head runs
    checkpoint_bytes: int  # the weight files' size (or parameters x the config's dtype)


@dataclass(frozen=True)
class RunSettings:
    """How the run uses the model: precision, batch shape, memory savers and sharding."""

    device: str  # "cpu" or "cuda"
    weight_bytes: int  # frozen base weights' element size as loaded (bitsandbytes' compute dtype)
    compute_bytes: int  # activations' element size (2 under bf16/fp16 autocast)
    quantization_bit: int | None
    double_quantization: bool
    tokens_per_forward: int
    gradient_checkpointing: bool
    eager_attention: bool
    segment_attention: bool  # per-row attention (packed micro-batches), which runs in fp32 on a CPU
    optimizer_state_bytes: int  # per trainable parameter
    holds_frozen_linears: bool = False  # frozen linear weights held in the compute dtype (model/frozen_weights.py)
    zero_stage: int = 0
    offload_optimizer: bool = False
    offload_params: bool = False
    num_devices: int = 1


ALWAYS, BACKWARD, STEP = "always", "backward", "step"  # held throughout, until backward frees it, in the step


@dataclass(frozen=True)
class Item:
    name: str
    bytes: int
    note: str
    phase: str = ALWAYS  # backward-pass tensors are freed before the optimizer step allocates its buffer


@dataclass(frozen=True)
class MemoryEstimate:
    items: tuple[Item, ...]
    notes: tuple[str, ...] = field(default=())

    def phase_bytes(self, phase: str) -> int:
        return sum(item.bytes for item in self.items if item.phase == phase)

    @property
    def total(self) -> int:
        """The peak: what is held throughout, plus the larger of the backward pass and the optimizer step."""
        return self.phase_bytes(ALWAYS) + max(self.phase_bytes(BACKWARD), self.phase_bytes(STEP))

    def fits(self, device_memory: int) -> bool:
        return self.total <= device_memory

    def as_dict(self) -> dict:
        return {"items": [asdict(item) for item in self.items], "total_bytes": self.total, "notes": list(self.notes)}


def quantized_bytes_per_param(bits: int, double_quantization: bool) -> float:
    if bits == 8:
        return 1 + FP32 / QUANT_BLOCK  # int8 weights with fp32 row/column statistics, about the same overhead
    constants = 1 / QUANT_BLOCK + FP32 / (QUANT_BLOCK * DOUBLE_QUANT_BLOCK) if double_quantization else FP32 / QUANT_BLOCK
    return 0.5 + constants


def activation_bytes_per_token_layer(model: ModelCounts, run: RunSettings) -> int:
    """Bytes one token keeps in one decoder layer until backward (see the module docstring)."""
    h, f, q, kv, p = model.hidden_size, model.intermediate_size, model.query_width, model.kv_width, run.compute_bytes
    residual = residual_bytes(run)
    casts_per_input = p < residual  # autocast makes a copy for each linear layer it feeds
    linear_inputs = (5 if casts_per_input else 2) * h * p + q * p + f * p
    if run.quantization_bit:  # bitsandbytes layers keep their inputs in their compute dtype, LoRA's autocast copies too
        linear_inputs = (2 * h + q + f) * run.weight_bytes + (5 * h * p if casts_per_input else 0)
    attention = (2 * q + 2 * kv) * p
    mlp = 3 * f * p
    norms = 2 * FP32 * h + (2 * h * residual if model.trains_norms else 0)
    scores = model.num_heads * run.tokens_per_forward * p if run.eager_attention else 0
    return norms + linear_inputs + attention + mlp + h * residual + scores


def estimate_memory(model: ModelCounts, run: RunSettings) -> MemoryEstimate:
    """The predicted peak memory of one device, itemised."""
    n = max(run.num_devices, 1)
    frozen = model.total_params - model.trainable_params - model.quantized_params
    quantized = model.quantized_params * quantized_bytes_per_param(run.quantization_bit or 4, run.double_quantization)
    held = model.held_linear_params if run.holds_frozen_linears else 0
    weights = (frozen - held) * residual_bytes(run) + held * run.compute_bytes + quantized
    trainable = model.trainable_params * FP32
    shard_weights = n if run.zero_stage >= 3 else 1
    items = [
        Item("weights", 0 if run.offload_params else int(weights / shard_weights), weight_note(model, run)),
        Item("trainable parameters", 0 if run.offload_params else trainable // shard_weights,
             f"{model.trainable_params / 1e6:,.2f}M in fp32"),
        Item("gradients", trainable // (n if run.zero_stage >= 2 else 1), "fp32, one per trainable parameter"),
        Item("optimizer state", optimizer_bytes(model, run), optimizer_note(run)),
    ]  # fmt: skip
    if run.device == "cpu" and run.quantization_bit:
        # the quantized layers' share of the file: the other weights are the mapped pages counted as weights above
        mapped = model.checkpoint_bytes * model.quantized_params // max(model.total_params - model.trainable_params, 1)
        items.append(Item("mapped checkpoint", mapped, "CPU: the quantized layers' original weights stay mapped"))
    autocast = run.compute_bytes < residual_bytes(run)
    step = 0 if run.offload_optimizer else trainable // (n if run.zero_stage >= 1 else 1)
    items += [
        Item("activations", activation_total(model, run), activation_note(model, run), BACKWARD),
        Item("autocast weight copies", autocast_copied_params(model, run) * run.compute_bytes if autocast else 0,
             "low-precision copies of path weights, kept for backward", BACKWARD),
        Item("output head", head_bytes(model, run), head_note(model), BACKWARD),
        Item("optimizer step", step, "AdamW's update buffer, after activations are freed", STEP),
        Item("framework", CPU_FRAMEWORK_BYTES if run.device == "cpu" else CUDA_FRAMEWORK_BYTES, framework_note(run)),
    ]  # fmt: skip
    if run.device == "cpu" and run.compute_bytes < FP32:
        lengths = 0 if run.segment_attention or run.eager_attention else attention_lengths(run.tokens_per_forward)
        items.append(Item("kernel caches", int(lengths * ATTENTION_BACKWARD_BYTES_PER_LENGTH + ONEDNN_KERNEL_CACHE * ONEDNN_KERNEL_BYTES),
                          f"CPU bf16: attention backward at {lengths} lengths, {ONEDNN_KERNEL_CACHE} oneDNN kernels"))  # fmt: skip
    other = replace(run, gradient_checkpointing=not run.gradient_checkpointing)
    return MemoryEstimate(tuple(items), (checkpointing_note(model, other),))


def autocast_copied_params(model: ModelCounts, run: RunSettings) -> int:
    """Path linear weights autocast casts: all of them, less those already held in the compute dtype."""
    return model.path_linear_params - (model.path_held_linear_params if run.holds_frozen_linears else 0)


def attention_lengths(tokens: int) -> int:
    """How many lengths bf16 SDPA backward meets, and keeps memory for, outside per-row attention: rows of up to
    `tokens` tokens cut to bucketed lengths (train/micro_batches.py)."""
    return len({bucketed_length(n, MICRO_BATCH_BUCKETS_PER_DOUBLING) for n in range(1, tokens + 1)})


def residual_bytes(run: RunSettings) -> int:
    """Element size of the hidden states between layers: the frozen weights' dtype (fp32 beside quantized weights,
    which prepare_model_for_kbit_training gives every weight it does not quantize)."""
    return FP32 if run.quantization_bit else run.weight_bytes


def activation_total(model: ModelCounts, run: RunSettings) -> int:
    """Activation bytes of one forward pass: every path layer's, or with checkpointing their inputs plus one layer's."""
    per_token = activation_bytes_per_token_layer(model, run)
    tokens = run.tokens_per_forward
    if run.gradient_checkpointing:
        return model.path_layers * tokens * model.hidden_size * residual_bytes(run) + tokens * per_token
    return model.path_layers * tokens * per_token


def activation_note(model: ModelCounts, run: RunSettings) -> str:
    per_token = activation_bytes_per_token_layer(model, run) / 1024
    if run.gradient_checkpointing:
        return f"checkpointed: {model.path_layers} layer inputs + one layer of {per_token:.1f} KiB/token"
    return f"{model.path_layers} layers x {run.tokens_per_forward} tokens x {per_token:.1f} KiB"


def checkpointing_note(model: ModelCounts, other: RunSettings) -> str:
    state = "with" if other.gradient_checkpointing else "without"
    return f"activations {state} gradient checkpointing: {activation_total(model, other) / MIB:,.0f} MiB"


def optimizer_bytes(model: ModelCounts, run: RunSettings) -> int:
    if run.offload_optimizer:
        return 0
    total = model.trainable_params * run.optimizer_state_bytes
    return total // (run.num_devices if run.zero_stage >= 1 else 1)


def head_bytes(model: ModelCounts, run: RunSettings) -> int:
    """Logits of one chunk of positions (or of all T, for a head glmtune cannot chunk), the hidden-state gradients
    and, under autocast, the head weight's low-precision copy."""
    tokens, residual = run.tokens_per_forward, residual_bytes(run)
    positions = min(tokens, max(1, CHUNK_ELEMENTS // model.vocab_size)) if model.plain_head else tokens
    cast = model.vocab_size * model.hidden_size * run.compute_bytes if run.compute_bytes < residual else 0
    return HEAD_COPIES * positions * model.vocab_size * FP32 + tokens * model.hidden_size * residual + cast


def weight_note(model: ModelCounts, run: RunSettings) -> str:
    frozen = f"{(model.total_params - model.trainable_params - model.quantized_params) / 1e6:,.1f}M x {residual_bytes(run)} B"
    if run.quantization_bit:
        frozen += f" + {model.quantized_params / 1e6:,.1f}M in {run.quantization_bit} bits"
    return frozen + (f", / {run.num_devices} (ZeRO-3)" if run.zero_stage >= 3 else "")


def optimizer_note(run: RunSettings) -> str:
    if run.offload_optimizer:
        return "offloaded to the CPU (ZeRO)"
    note = f"{run.optimizer_state_bytes} B per trainable parameter"
    return note + (f", / {run.num_devices} (ZeRO-{run.zero_stage})" if run.zero_stage >= 1 else "")


def head_note(model: ModelCounts) -> str:
    return "one chunk of logits at a time (train/chunked_head.py)" if model.plain_head else "every position's logits"


def framework_note(run: RunSettings) -> str:
    return "Python, torch, transformers, PEFT, TRL; tokenizer and data" if run.device == "cpu" else "CUDA context and kernels"
