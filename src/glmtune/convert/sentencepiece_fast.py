"""A SentencePiece BPE model as a `tokenizers` fast tokenizer that gives the same ids.

transformers' generic converter assumes Llama's normalizer settings; ChatGLM's model has its
own, so each rule here is read from the model's own spec: the precompiled character map, the
whitespace clean-up, the dummy prefix and byte fallback. SentencePiece BPE repeatedly merges
the adjacent pair whose concatenation is the highest-scored piece; ranking every
(left, right) split of each piece by that piece's score gives tokenizers' BPE the same order.
The whole text is one BPE word, as in SentencePiece, which never pre-splits at spaces.
"""

from pathlib import Path
from typing import Any

from glmtune.convert.layout import UnsupportedLayoutError

SPACE = "\u2581"  # SentencePiece's visible space
BPE_TYPE = 2  # TrainerSpec.ModelType.BPE
NORMAL, UNKNOWN, USER_DEFINED = 1, 2, 4  # SentencePiece piece types


def is_sentencepiece(path: Path) -> bool:
    """Whether `path` holds a SentencePiece model (GLM-4's tokenizer.model is a tiktoken file instead)."""
    import sentencepiece

    try:
        sentencepiece.SentencePieceProcessor(model_file=str(path))
    except (OSError, RuntimeError):
        return False
    return True


def read_proto(path: Path) -> Any:
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(path.read_bytes())
    return proto


def bpe_merges(vocab: dict[str, int], scores: dict[str, float]) -> list[tuple[str, str]]:
    """Every split of a mergeable piece into two known pieces, most preferred (highest-scored result) first."""
    ranked = []
    for piece, score in scores.items():
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in vocab and right in vocab:
                ranked.append((-score, vocab[piece], cut, left, right))
    return [(left, right) for *_, left, right in sorted(ranked)]


def normalizer(spec: Any) -> Any:
    """The model's normalization: its character map, then SentencePiece's whitespace rules in its order."""
    from tokenizers import Regex, normalizers

    steps = []
    if spec.precompiled_charsmap:
        steps.append(normalizers.Precompiled(spec.precompiled_charsmap))
    if spec.remove_extra_whitespaces:
        steps += [normalizers.Replace(Regex("^ +| +$"), ""), normalizers.Replace(Regex(" {2,}"), " ")]
    if spec.add_dummy_prefix:
        steps.append(normalizers.Prepend(" "))
    if spec.escape_whitespaces:
        steps.append(normalizers.Replace(" ", SPACE))
    return normalizers.Sequence(steps)


def fast_tokenizer(path: Path) -> Any:
    """A `tokenizers.Tokenizer` equal to the SentencePiece BPE model at `path` (special tokens are the caller's)."""
    from tokenizers import Tokenizer, decoders, models

    proto = read_proto(path)
    if proto.trainer_spec.model_type != BPE_TYPE:
        raise UnsupportedLayoutError(f"{path} is a SentencePiece model of type {proto.trainer_spec.model_type}, not BPE: no exact fast equivalent here")
    if proto.trainer_spec.treat_whitespace_as_suffix:
        raise UnsupportedLayoutError(f"{path} treats whitespace as a suffix, which the conversion does not reproduce")
    user_defined = [piece.piece for piece in proto.pieces if piece.type == USER_DEFINED]
    if user_defined:
        # SentencePiece matches them inside a word, keeping one dummy prefix; tokenizers' added tokens cannot.
        raise UnsupportedLayoutError(f"{path} has user-defined symbols ({', '.join(user_defined[:3])}), which the conversion does not reproduce")
    vocab = {piece.piece: index for index, piece in enumerate(proto.pieces)}
    mergeable = {piece.piece: piece.score for piece in proto.pieces if piece.type == NORMAL}
    unk = next(piece.piece for piece in proto.pieces if piece.type == UNKNOWN)
    backend = Tokenizer(
        models.BPE(vocab=vocab, merges=bpe_merges(vocab, mergeable), unk_token=unk, fuse_unk=True, byte_fallback=proto.trainer_spec.byte_fallback)
    )
    backend.normalizer = normalizer(proto.normalizer_spec)
    backend.pre_tokenizer = None
    steps = [decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse()]
    if proto.normalizer_spec.add_dummy_prefix:
        steps.append(decoders.Strip(content=" ", left=1, right=0))
    backend.decoder = decoders.Sequence(steps)
    return backend
