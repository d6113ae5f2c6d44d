"""ChatGLM2/3's SentencePiece tokenizer, with the rules of its remote code, as a native fast tokenizer.

The original tokenizer (tokenization_chatglm.py) appends its special tokens after the
SentencePiece vocabulary, in a fixed order, and prefixes every encoded text with
[gMASK] sop. Here they are added tokens with the same ids, kept whole where they appear
in text; the text between them is encoded by the SentencePiece model on its own (its own
dummy prefix, nothing added), which is what the original does with each part of a
message. `sop` and `eop` look like word pieces ("philosophy", "people"), so they are kept
whole only as words of their own.
"""

import logging
from pathlib import Path

from glmtune.convert.glm4_tokenizer import is_tiktoken, write_glm4_tokenizer
from glmtune.convert.layout import UnsupportedLayoutError
from glmtune.convert.sentencepiece_fast import fast_tokenizer, is_sentencepiece

logger = logging.getLogger(__name__)

SENTENCEPIECE_MODEL = "tokenizer.model"
REMOTE_TOKENIZER_CODE = "tokenization_chatglm.py"
MASK_TOKENS = ("[MASK]", "[gMASK]", "[sMASK]", "sop", "eop")
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>", "<|observation|>")  # ChatGLM3 only
WORD_LIKE = ("sop", "eop")
PREFIX = ("[gMASK]", "sop")
CHATGLM3_TEMPLATE = (
    "[gMASK]sop{% for message in messages %}<|{{ message['role'] }}|>\n {{ message['content'] }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
CHATGLM2_TEMPLATE = (
    "[gMASK]sop{% set round = namespace(index=0) %}{% for message in messages %}"
    "{% if message['role'] == 'user' %}{% set round.index = round.index + 1 %}"
    "[Round {{ round.index }}]\n\n问：{{ message['content'] }}\n\n答："
    "{% elif message['role'] == 'assistant' %}{{ message['content'] }}\n\n{% endif %}{% endfor %}"
)


def has_role_tokens(source: Path) -> bool:
    """ChatGLM3's tokenizer code defines the role tokens, ChatGLM2's does not; without the code, assume ChatGLM3."""
    code = source / REMOTE_TOKENIZER_CODE
    return not code.is_file() or ROLE_TOKENS[-1] in code.read_text(encoding="utf-8", errors="replace")


def build_chatglm_tokenizer(model_file: Path, roles: bool):
    """A PreTrainedTokenizerFast encoding as ChatGLM2 (roles=False) or ChatGLM3's original tokenizer."""
    import sentencepiece
    from tokenizers import AddedToken, processors
    from transformers import PreTrainedTokenizerFast

    processor = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
    backend = fast_tokenizer(model_file)
    special = MASK_TOKENS + (ROLE_TOKENS if roles else ())
    backend.add_special_tokens([AddedToken(token, special=True, normalized=False, single_word=token in WORD_LIKE) for token in special])
    size = processor.get_piece_size()
    moved = [token for offset, token in enumerate(special) if backend.token_to_id(token) != size + offset]
    if moved:
        raise UnsupportedLayoutError(
            f"{model_file}: {', '.join(moved)} would not keep the original id (a name that is also a SentencePiece piece); "
            "put a tokenizer.json beside the weights, or use --trust_remote_code true"
        )
    eos = processor.id_to_piece(processor.eos_id())
    backend.post_processor = processors.TemplateProcessing(
        single=f"{PREFIX[0]} {PREFIX[1]} $A",
        pair=f"{PREFIX[0]} {PREFIX[1]} $A $B {eos}",  # the original's build_inputs_with_special_tokens
        special_tokens=[(token, backend.token_to_id(token)) for token in (*PREFIX, eos)],
    )
    unk = processor.id_to_piece(processor.unk_id())
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=eos,
        unk_token=unk,
        pad_token=unk,  # the original pads with the unk id
        additional_special_tokens=list(special),
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = CHATGLM3_TEMPLATE if roles else CHATGLM2_TEMPLATE
    return tokenizer


def write_chatglm_tokenizer(source: Path, target: Path) -> bool:
    """Write the fast equivalent of the source's SentencePiece (ChatGLM2/3) or tiktoken (GLM-4) tokenizer into target; False where there is none."""
    model_file = source / SENTENCEPIECE_MODEL
    if not model_file.is_file():
        return False
    if not is_sentencepiece(model_file):
        if is_tiktoken(model_file):  # GLM-4
            write_glm4_tokenizer(source, target, model_file)
            return True
        logger.warning(
            "%s is not a SentencePiece model nor a tiktoken BPE file (GLM-4's): no fast tokenizer written; "
            "put a tokenizer.json beside the weights, or use --trust_remote_code true",
            model_file,
        )
        return False
    build_chatglm_tokenizer(model_file, has_role_tokens(source)).save_pretrained(target)
    return True
