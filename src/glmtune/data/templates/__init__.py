"""Chat templates: how a conversation becomes text and token ids, turn by turn.

engine lays a conversation out into pieces, tools holds each model family's tool-call
syntax, catalogue names every template, and encoding turns pieces into token ids.
"""

from glmtune.data.templates.catalogue import (
    TEMPLATES,
    TOOL_TEMPLATES_HINT,
    get_template,
)
from glmtune.data.templates.encoding import (
    EncodedTurn,
    encode_pieces,
    encode_prompt,
    encode_turns,
)
from glmtune.data.templates.engine import (
    TOKEN,
    ChatFormat,
    Piece,
    Template,
    TokenizerChatTemplate,
    TurnPieces,
    split_conversation,
)
from glmtune.data.templates.tools import (
    ParsedReply,
    ToolCall,
    Tools,
    ToolSyntax,
    parse_tools,
)

__all__ = [
    "TEMPLATES",
    "TOKEN",
    "TOOL_TEMPLATES_HINT",
    "ChatFormat",
    "EncodedTurn",
    "ParsedReply",
    "Piece",
    "Template",
    "TokenizerChatTemplate",
    "ToolCall",
    "ToolSyntax",
    "Tools",
    "TurnPieces",
    "encode_pieces",
    "encode_prompt",
    "encode_turns",
    "get_template",
    "parse_tools",
    "split_conversation",
]
