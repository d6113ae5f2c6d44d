"""A tiny SentencePiece BPE model trained at test time, and texts that exercise its encoding."""

import io
from pathlib import Path

CORPUS = [
    "The quick brown fox jumps over the lazy dog while the cat watches.",
    "你好，我是人工智能助手。今天天气很好，我们去公园散步吧。",
    "def main():\n    print('hello world')\n    return 0\n",
    "ChatGLM3 是一个对话模型，supports tools and code 123456 7890.",
    "机器学习 machine learning 深度学习 deep learning。  Two  spaces.",
]
TEXTS = {
    "english": "Hello world, the quick brown fox.",
    "chinese": "你好，今天天气很好。",
    "mixed": "ChatGLM3是一个对话模型 with code 2024",
    "whitespace": "  two leading,   three inner, trailing  ",
    "newlines-tabs": "line one\n\n\tline two\n",
    "only-space": " ",
    "rare-characters": "emoji 😀 and 龘 fall back to bytes",
    "roles": "<|system|>\nYou help.<|user|>\n 你好<|assistant|>",
    "masks": "[MASK] [gMASK][sMASK] text",
    "sop-eop-words": "[gMASK]sop hello eop",
    "sop-inside-words": "philosophy people soporific",
}


def train_sentencepiece(path: Path) -> Path:
    """A tiny BPE model trained as ChatGLM's is configured: byte fallback, identity normalization, dummy prefix."""
    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 20), model_writer=model, model_type="bpe", vocab_size=400,
        byte_fallback=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
        add_dummy_prefix=True, split_digits=True, character_coverage=0.9995, minloglevel=2,
    )  # fmt: skip
    path.write_bytes(model.getvalue())
    return path
