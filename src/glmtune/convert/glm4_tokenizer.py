"""GLM-4's tiktoken tokenizer, with the rules of its remote code, as a native fast tokenizer.

GLM-4-9B ships `tokenizer.model` as a tiktoken BPE file (a line `base64(token bytes) rank`
per token), not SentencePiece. Its tokenization_chatglm.py encodes text with
`tiktoken.Encoding(pat_str=PATTERN, mergeable_ranks=...)`, numbers its special tokens after
the ranks in SPECIAL_TOKENS' order (the published tokenizer_config.json lists the same ids
in `added_tokens_decoder`) and puts [gMASK] <sop> before every encoded text.
transformers' TikTokenConverter turns the ranks into byte-level BPE (vocab and merges, the
pattern as a Split pre-tokenizer); here the special tokens are added tokens with the
original ids, kept whole in text, and a template processor adds the prefix.
"""

import base64
import binascii
import json
from pathlib import Path

from glmtune.convert.layout import UnsupportedLayoutError

# GLM-4's tokenization_chatglm.py pat_str.
PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# GLM-4's tokenization_chatglm.py special_tokens, numbered from len(mergeable_ranks) on.
SPECIAL_TOKENS = (
    "<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>",
    "<|system|>", "<|user|>", "<|assistant|>", "<|observation|>",
    "<|begin_of_image|>", "<|end_of_image|>", "<|begin_of_video|>", "<|end_of_video|>",
)  # fmt: skip
EOS = "<|endoftext|>"
PREFIX = ("[gMASK]", "<sop>")
GLM4_TEMPLATE = (
    "[gMASK]<sop>{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SNIFF_LINES = 16


def is_tiktoken(path: Path) -> bool:
    """Whether `path` reads as a tiktoken BPE file: its first lines are `base64 rank`."""
    with path.open("rb") as handle:
        lines = [line for line in (handle.readline() for _ in range(SNIFF_LINES)) if line.strip()]
    if not lines:
        return False
    for line in lines:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            return False
        try:
            base64.b64decode(parts[0], validate=True)
        except (binascii.Error, ValueError):
            return False
    return True


def read_ranks(path: Path) -> dict[bytes, int]:
    from tiktoken.load import load_tiktoken_bpe

    return load_tiktoken_bpe(str(path))


def special_tokens(source: Path, size: int) -> list[str]:
    """The special tokens in id order from size on: the source's tokenizer_config.json where it lists them, else GLM-4's."""
    config = source / "tokenizer_config.json"
    listed = {}
    if config.is_file():
        listed = json.loads(config.read_text(encoding="utf-8")).get("added_tokens_decoder") or {}
    if not listed:
        return list(SPECIAL_TOKENS)
    numbered = sorted((int(number), entry["content"]) for number, entry in listed.items())
    if [number for number, _ in numbered] != list(range(size, size + len(numbered))):
        raise UnsupportedLayoutError(
            f"{config}: added tokens are not numbered right after the {size} tiktoken ranks; "
            "put a tokenizer.json beside the weights, or use --trust_remote_code true"
        )
    tokens = [token for _, token in numbered]
    missing = [token for token in (EOS, *PREFIX) if token not in tokens]
    if missing:
        raise UnsupportedLayoutError(f"{config}: no {', '.join(missing)} among the added tokens; use --trust_remote_code true")
    return tokens


def build_glm4_tokenizer(model_file: Path, special: list[str] | tuple[str, ...] = SPECIAL_TOKENS):
    """A PreTrainedTokenizerFast encoding as GLM-4's original tokenizer over the tiktoken file `model_file`."""
    from tokenizers import AddedToken, processors
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    size = len(read_ranks(model_file))
    backend = TikTokenConverter(vocab_file=str(model_file), pattern=PATTERN).converted()
    if backend.get_vocab_size() != size:
        raise UnsupportedLayoutError(f"{model_file}: ranks are not numbered 0..{size - 1}; use --trust_remote_code true")
    backend.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in special])
    moved = [token for offset, token in enumerate(special) if backend.token_to_id(token) != size + offset]
    if moved:
        raise UnsupportedLayoutError(
            f"{model_file}: {', '.join(moved)} would not keep the original id (a name that is also a tiktoken token); "
            "put a tokenizer.json beside the weights, or use --trust_remote_code true"
        )
    backend.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{PREFIX[0]} {PREFIX[1]} $A",
                pair=f"{PREFIX[0]} {PREFIX[1]} $A $B {EOS}",
                special_tokens=[(token, backend.token_to_id(token)) for token in (*PREFIX, EOS)],
            ),
        ]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=EOS,
        pad_token=EOS,  # GLM-4's tokenizer_config.json pads with <|endoftext|>
        additional_special_tokens=[token for token in special if token != EOS],
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = GLM4_TEMPLATE
    return tokenizer


def write_glm4_tokenizer(source: Path, target: Path, model_file: Path) -> None:
    size = len(read_ranks(model_file))
    build_glm4_tokenizer(model_file, special_tokens(source, size)).save_pretrained(target)
