"""Each tool syntax reads back the calls it writes: parsers live beside the renderers in templates/tools.py."""

import json
from types import SimpleNamespace

import pytest

from glmtune.data.templates import TEMPLATES, ParsedReply, Template, get_template
from glmtune.data.templates.engine import joined

TOOL_SYNTAXES = sorted(
    name for name, template in TEMPLATES.items() if isinstance(template, Template) and template.tools
)
NAMES = {"get_weather", "search"}
CALLS = [
    ("get_weather", {"city": "Paris"}),
    ("search", {"query": "法国的首都", "limit": 3, "exact": True, "filters": {"lang": ["fr", "en"]}, "page": None}),
    ("get_weather", {}),
]
STAND_IN = SimpleNamespace(bos_token="<s>", eos_token="</s>")


def written(name: str, calls: list) -> str:
    """A function message as the template renders it: exactly what the model learns to write."""
    content = json.dumps([{"name": call, "arguments": arguments} for call, arguments in calls])
    template = get_template(name)
    return joined(template.call_pieces(content, {"bos": "<s>", "eos": "</s>"}))


def test_the_four_families_have_a_tool_syntax():
    assert {"chatglm3", "glm4", "llama3", "qwen"} <= set(TOOL_SYNTAXES)


@pytest.mark.parametrize("name", TOOL_SYNTAXES)
@pytest.mark.parametrize("call", CALLS, ids=["simple", "nested", "no-arguments"])
def test_a_rendered_call_parses_back(name, call):
    reply = written(name, [call])
    assert get_template(name).tools.parse(reply, NAMES) == ParsedReply("", [call])


@pytest.mark.parametrize("name", TOOL_SYNTAXES)
def test_a_text_answer_stays_text(name):
    template = get_template(name)
    for reply in ["\nParis is sunny.", "Paris is sunny.", "", "{not json", "search for it\n"]:
        assert template.tools.parse(reply, NAMES) == ParsedReply(reply)


def test_qwen_reads_parallel_calls_and_the_text_before_them():
    reply = "Let me check.\n" + written("qwen", CALLS)
    assert get_template("qwen").tools.parse(reply, NAMES) == ParsedReply("Let me check.", CALLS)


def test_qwen_reads_a_last_call_cut_before_its_closing_tag():
    reply = '<tool_call>\n{"name": "search", "arguments": {"query": "x"}}\n'
    assert get_template("qwen").tools.parse(reply, NAMES).calls == [("search", {"query": "x"})]


@pytest.mark.parametrize(
    "name, reply",
    [
        ("qwen", '<tool_call>\n{"name": "search", "arguments": {"query": </tool_call>'),
        ("qwen", '<tool_call>\n{"name": "search", "arguments": [1]}\n</tool_call>'),
        ("qwen", '<tool_call>\n{"name": "search", "arguments": {"x": NaN}}\n</tool_call>'),
        ("llama3", '{"name": "unknown_tool", "parameters": {}}'),
        ("llama3", '{"name": "search", "parameters": {"q": 1}'),
        ("glm4", 'search\n{"query": '),
        ("glm4", "search\n[1, 2]"),
        ("glm4", 'unknown_tool\n{"query": "x"}'),
        ("chatglm3", "search\n```python\ntool_call(__import__('os').system('true'))\n```"),
        ("chatglm3", "search\n```python\ntool_call(query=open('/etc/passwd').read())\n```"),
        ("chatglm3", "search\n```python\ntool_call(query={1, 2})\n```"),
        ("chatglm3", "search\n```python\nprint(1)\n```"),
        ("chatglm3", "search\n```python\ntool_call(**{'a': 1})\n```"),
        ("chatglm3", "search\n```python\ntool_call(" + "(" * 500 + "\n```"),
    ],
)
def test_a_broken_or_unsafe_call_stays_text(name, reply):
    assert get_template(name).tools.parse(reply, NAMES) == ParsedReply(reply)


@pytest.mark.parametrize("name", TOOL_SYNTAXES)
def test_settled_text_never_reaches_into_a_call(name):
    """Streaming sends the settled start of a reply; no prefix of a call may be sent as text."""
    syntax = get_template(name).tools
    call_reply = ("Let me check.\n" if name == "qwen" else "") + written(name, CALLS[:1])
    parsed = syntax.parse(call_reply, NAMES)
    for end in range(len(call_reply) + 1):
        assert parsed.content.startswith(call_reply[: syntax.settled(call_reply[:end], NAMES)])
    text_reply = "\nParis is sunny today, 22 °C."
    assert syntax.settled(text_reply, NAMES) <= len(text_reply)
    assert syntax.settled(text_reply + " More text follows.", NAMES) >= len(text_reply.rstrip()) - 1


@pytest.mark.parametrize(
    "name, any_call, named",
    [
        ("qwen", '<tool_call>\n{"name": "', '<tool_call>\n{"name": "search", "arguments": '),
        ("llama3", '{"name": "', '{"name": "search", "parameters": '),
        ("glm4", None, "search\n"),
        ("chatglm3", None, "search\n```python\ntool_call("),
    ],
)
def test_opening_is_how_a_call_starts(name, any_call, named):
    syntax = get_template(name).tools
    assert (syntax.opening(), syntax.opening("search")) == (any_call, named)
    assert written(name, [("search", {"q": 1})]).startswith(named)
