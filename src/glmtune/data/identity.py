"""Identity placeholders in datasets that teach a model its name and maker, filled from the settings."""

from glmtune.data.converters import message
from glmtune.data.schema import Example, Message


def fill_identity(example: Example, name: str, author: str) -> Example:
    """Fill identity placeholders: LLaMA-Factory's {{name}}/{{author}}, ChatGLM Efficient Tuning's <NAME>/<AUTHOR>."""

    def fill(text: str | None) -> str | None:
        if text is None:
            return None
        for placeholder, value in (("{{name}}", name), ("{{author}}", author), ("<NAME>", name), ("<AUTHOR>", author)):
            text = text.replace(placeholder, value)
        return text

    def fill_message(turn: Message | None) -> Message | None:
        return None if turn is None else message(turn["role"], fill(turn["content"]) or "")

    return {
        **example,
        "messages": [message(turn["role"], fill(turn["content"]) or "") for turn in example["messages"]],
        "system": fill(example["system"]),
        "chosen": fill_message(example["chosen"]),
        "rejected": fill_message(example["rejected"]),
        "text": fill(example["text"]),
    }
