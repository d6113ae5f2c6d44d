"""Golden tests: every template renders the format its model documents, character for character.

Where each format comes from: ChatGLM2 `tokenization_chatglm.build_prompt` (and its
"[gMASK]sop" prefix tokens); ChatGLM3 `build_single_message` and PROMPT.md; glm-4-9b-chat's
chat_template; Baichuan/Baichuan2 `build_chat_input` (user/assistant tokens 195/196);
Meta's Llama 2 `chat_completion` and Llama 3 `ChatFormat`; Qwen2 / Qwen2.5 and SmolLM2
chat_templates; Stanford Alpaca's `train.py` prompt; FastChat's `vicuna_v1.1`;
deepseek-llm-chat's and Gemma 3's chat_templates. Tool use follows ChatGLM3's finetune
demo, glm-4-9b-chat's and Qwen2.5's chat_templates and Llama 3.1's (tools in the system message).

Rendering needs only the tokenizer's bos/eos text, so each model gets a stand-in with its
own tokens; `default` is checked against a real (tiny) tokenizer's apply_chat_template.
"""

import json
from types import SimpleNamespace

import pytest
from transformers import AutoTokenizer

from glmtune.data.templates import (
    TEMPLATES,
    encode_prompt,
    encode_turns,
    get_template,
    parse_tools,
    split_conversation,
)
from glmtune.errors import ConfigError

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "法国的首都？"},
    {"role": "assistant", "content": "巴黎。"},
]

TOKENS = {  # (bos, eos) of each model's tokenizer; "<s>", "</s>" where not listed
    "glm4": (None, "<|endoftext|>"),
    "llama3": ("<|begin_of_text|>", "<|eot_id|>"),
    "qwen": (None, "<|im_end|>"),
    "qwen2.5": (None, "<|im_end|>"),
    "smollm2": ("<|im_start|>", "<|im_end|>"),
    "chatml": (None, "<|im_end|>"),
    "yi": ("<|startoftext|>", "<|endoftext|>"),
    "deepseek": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    "gemma": ("<bos>", "<eos>"),
}

CHATML_BODY = (
    "<|im_start|>system\nBe brief.<|im_end|>\n"
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
    "<|im_start|>user\n法国的首都？<|im_end|>\n<|im_start|>assistant\n巴黎。<|im_end|>\n"
)

GOLDEN = {
    "empty": "Be brief.HiHello!</s>法国的首都？巴黎。</s>",
    "chatglm2": (
        "[gMASK]sopBe brief.[Round 1]\n\n问：Hi\n\n答：Hello!\n\n[Round 2]\n\n问：法国的首都？\n\n答：巴黎。</s>"
    ),
    "chatglm3": (
        "[gMASK]sop<|system|>\nBe brief.<|user|>\nHi<|assistant|>\nHello!"
        "<|user|>\n法国的首都？<|assistant|>\n巴黎。</s>"
    ),
    "glm4": (
        "[gMASK]<sop><|system|>\nBe brief.<|user|>\nHi<|assistant|>\nHello!"
        "<|user|>\n法国的首都？<|assistant|>\n巴黎。<|endoftext|>"
    ),
    "baichuan": "Be brief.<reserved_102>Hi<reserved_103>Hello!<reserved_102>法国的首都？<reserved_103>巴黎。</s>",
    "baichuan2": "Be brief.<reserved_106>Hi<reserved_107>Hello!<reserved_106>法国的首都？<reserved_107>巴黎。</s>",
    "llama2": (
        "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s>"
        "<s>[INST] 法国的首都？ [/INST] 巴黎。 </s>"
    ),
    "llama3": (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n法国的首都？<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n巴黎。<|eot_id|>"
    ),
    "qwen": CHATML_BODY,
    "qwen2.5": CHATML_BODY,
    "smollm2": CHATML_BODY,
    "chatml": CHATML_BODY,
    "yi": CHATML_BODY,
    "alpaca": (
        "Be brief.\n\n### Instruction:\nHi\n\n### Response:Hello!</s>"
        "\n\n### Instruction:\n法国的首都？\n\n### Response:巴黎。</s>"
    ),
    "vicuna": "Be brief. USER: Hi ASSISTANT: Hello!</s>USER: 法国的首都？ ASSISTANT: 巴黎。</s>",
    "deepseek": (
        "<｜begin▁of▁sentence｜>Be brief.\n\nUser: Hi\n\nAssistant: Hello!<｜end▁of▁sentence｜>"
        "User: 法国的首都？\n\nAssistant: 巴黎。<｜end▁of▁sentence｜>"
    ),
    "gemma": (
        "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n"
        "<start_of_turn>user\n法国的首都？<end_of_turn>\n<start_of_turn>model\n巴黎。<end_of_turn>\n"
    ),
}

DEFAULT_SYSTEMS = {
    "qwen": "You are a helpful assistant.",
    "qwen2.5": "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
    "smollm2": "You are a helpful AI assistant named SmolLM, trained by Hugging Face",
    "alpaca": (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request."
    ),
    "vicuna": (
        "A chat between a curious user and an artificial intelligence assistant. "
        "The assistant gives helpful, detailed, and polite answers to the user's questions."
    ),
}

STOP_WORDS = {
    "empty": ["</s>"],
    "chatglm2": ["</s>"],
    "chatglm3": ["<|user|>", "<|observation|>", "</s>"],
    "glm4": ["<|user|>", "<|observation|>", "<|endoftext|>"],
    "baichuan": ["<reserved_102>", "</s>"],
    "baichuan2": ["<reserved_106>", "</s>"],
    "llama2": ["</s>"],
    "llama3": ["<|eot_id|>", "<|eom_id|>"],
    "qwen": ["<|im_end|>"],
    "qwen2.5": ["<|im_end|>"],
    "smollm2": ["<|im_end|>"],
    "chatml": ["<|im_end|>"],
    "yi": ["<|im_end|>", "<|endoftext|>"],
    "alpaca": ["</s>"],
    "vicuna": ["</s>"],
    "deepseek": ["<｜end▁of▁sentence｜>"],
    "gemma": ["<end_of_turn>", "<eos>"],
}

NAMED = sorted(GOLDEN)


def stand_in(name: str) -> SimpleNamespace:
    bos, eos = TOKENS.get(name, ("<s>", "</s>"))
    return SimpleNamespace(bos_token=bos, eos_token=eos)


def full_text(name: str, messages: list[dict], **kwargs) -> str:
    turns = get_template(name).render(stand_in(name), messages, **kwargs)
    return "".join(prompt + response for prompt, response in turns)


@pytest.fixture(scope="module")
def tokenizer(tiny_tokenizer_dir):
    return AutoTokenizer.from_pretrained(tiny_tokenizer_dir)


def test_every_named_template_has_a_golden_string():
    assert set(GOLDEN) == set(TEMPLATES) - {"default"}
    assert set(STOP_WORDS) == set(GOLDEN)


@pytest.mark.parametrize("name", NAMED)
def test_two_turns_with_a_system_prompt_render_as_documented(name):
    assert full_text(name, CONVERSATION) == GOLDEN[name]


@pytest.mark.parametrize("name", NAMED)
def test_each_prompt_is_what_the_model_sees_before_it_answers(name):
    (prompt_1, answer_1), (prompt_2, answer_2) = get_template(name).render(stand_in(name), CONVERSATION)
    assert full_text(name, CONVERSATION[:2]) == prompt_1
    assert full_text(name, CONVERSATION[:4]) == prompt_1 + answer_1 + prompt_2
    assert answer_1.strip().startswith("Hello!") and answer_2.strip().startswith("巴黎。")


@pytest.mark.parametrize("name", NAMED)
def test_a_conversation_ending_on_a_user_turn_is_a_generation_prompt(name):
    turns = get_template(name).render(stand_in(name), CONVERSATION[:-1])
    last_answer = get_template(name).render(stand_in(name), CONVERSATION)[-1][1]
    assert turns[-1][1] == ""
    assert "".join(prompt + response for prompt, response in turns) == GOLDEN[name].removesuffix(last_answer)


def test_generation_prompts_end_where_the_model_starts_writing():
    assert full_text("chatglm2", CONVERSATION[1:2]).endswith("[Round 1]\n\n问：Hi\n\n答：")
    assert full_text("chatglm3", CONVERSATION[1:2]) == "[gMASK]sop<|user|>\nHi<|assistant|>"
    assert full_text("llama3", CONVERSATION[1:2]).endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert full_text("vicuna", CONVERSATION[1:2]).endswith("USER: Hi ASSISTANT:")


@pytest.mark.parametrize("name", NAMED)
def test_default_system_is_applied_only_when_none_is_given(name):
    default = DEFAULT_SYSTEMS.get(name, "")
    assert get_template(name).default_system == default
    without_system = full_text(name, CONVERSATION[1:])
    if default:
        assert without_system == GOLDEN[name].replace("Be brief.", default)
        assert default not in full_text(name, CONVERSATION[1:], system="Custom")
    else:
        assert without_system == full_text(name, CONVERSATION[1:], system="")


def test_a_system_argument_overrides_the_conversations_own_system_message():
    assert "Custom" in full_text("qwen", CONVERSATION, system="Custom")
    assert "Be brief." not in full_text("qwen", CONVERSATION, system="Custom")


def test_an_empty_system_prompt_removes_the_default():
    assert full_text("qwen", CONVERSATION[1:2], system="") == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.parametrize("name", NAMED)
def test_stop_words_are_named(name):
    assert get_template(name).stop_words(stand_in(name)) == STOP_WORDS[name]


@pytest.mark.parametrize("messages", [CONVERSATION, CONVERSATION[:4], CONVERSATION[1:], CONVERSATION[1:4]])
def test_default_equals_the_tokenizers_own_chat_template(tokenizer, messages):
    turns = get_template("default").render(tokenizer, messages)
    generation = messages[-1]["role"] == "user"
    expected = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)
    assert "".join(prompt + response for prompt, response in turns) == expected
    turn_ids = encode_turns(get_template("default"), tokenizer, messages)
    ids = [token for prompt, response in turn_ids for token in prompt + response]
    assert ids == tokenizer.encode(expected, add_special_tokens=False)


TOOLS = json.dumps([{"name": "get_weather", "description": "Current weather", "parameters": {"type": "object"}}])
TOOL_CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "function", "content": '{"name": "get_weather", "arguments": {"city": "Paris"}}'},
    {"role": "observation", "content": '{"temperature": 22}'},
    {"role": "assistant", "content": "22 °C."},
]

TOOL_GOLDEN = {
    "chatglm3": (
        "[gMASK]sop<|system|>\nAnswer the following questions as best as you can. "
        "You have access to the following tools:\n"
        '[\n    {\n        "name": "get_weather",\n        "description": "Current weather",\n'
        '        "parameters": {\n            "type": "object"\n        }\n    }\n]'
        "<|system|>\nBe brief.<|user|>\nWeather in Paris?"
        "<|assistant|>get_weather\n```python\ntool_call(city='Paris')\n```"
        '<|observation|>\n{"temperature": 22}<|assistant|>\n22 °C.</s>'
    ),
    "glm4": (
        "[gMASK]<sop><|system|>\n你是一个名为 ChatGLM 的人工智能助手。你是基于智谱AI训练的语言模型 GLM-4 模型开发的，"
        "你的任务是针对用户的问题和要求提供适当的答复和支持。\n\n# 可用工具\n## get_weather\n\n"
        '{\n    "name": "get_weather",\n    "description": "Current weather",\n'
        '    "parameters": {\n        "type": "object"\n    }\n}\n在调用上述函数时，请使用 Json 格式表示调用的参数。'
        "<|system|>\nBe brief.<|user|>\nWeather in Paris?"
        '<|assistant|>get_weather\n{"city": "Paris"}'
        '<|observation|>\n{"temperature": 22}<|assistant|>\n22 °C.<|endoftext|>'
    ),
    "qwen": (
        "<|im_start|>system\nBe brief.\n\n# Tools\n\n"
        "You may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
        '{"type": "function", "function": {"name": "get_weather", "description": "Current weather", '
        '"parameters": {"type": "object"}}}\n</tools>\n\n'
        "For each function call, return a json object with function name and arguments within "
        "<tool_call></tool_call> XML tags:\n<tool_call>\n"
        '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n"
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>\n'
        '<|im_start|>user\n<tool_response>\n{"temperature": 22}\n</tool_response><|im_end|>\n'
        "<|im_start|>assistant\n22 °C.<|im_end|>\n"
    ),
    "llama3": (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "Environment: ipython\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
        "You have access to the following functions. To call a function, please respond with JSON for a function call."
        'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.'
        "Do not use variables.\n\n"
        '{\n    "type": "function",\n    "function": {\n        "name": "get_weather",\n'
        '        "description": "Current weather",\n        "parameters": {\n            "type": "object"\n'
        "        }\n    }\n}\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWeather in Paris?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
        '{"name": "get_weather", "parameters": {"city": "Paris"}}<|eot_id|>'
        '<|start_header_id|>ipython<|end_header_id|>\n\n{"temperature": 22}<|eot_id|>'
        "<|start_header_id|>assistant<|end_header_id|>\n\n22 °C.<|eot_id|>"
    ),
}

TOOL_TEMPLATES = sorted(TOOL_GOLDEN)
NO_TOOL_TEMPLATES = sorted(set(NAMED) - {*TOOL_TEMPLATES, "qwen2.5"})


@pytest.mark.parametrize("name", TOOL_TEMPLATES)
def test_tool_calls_and_results_render_as_documented(name):
    assert full_text(name, TOOL_CONVERSATION, tools=TOOLS) == TOOL_GOLDEN[name]


@pytest.mark.parametrize("name", TOOL_TEMPLATES)
def test_tool_calls_are_trained_on_and_tool_results_are_prompt(name):
    turns = get_template(name).render(stand_in(name), TOOL_CONVERSATION, tools=TOOLS)
    assert "Paris" in turns[0][1] and "temperature" not in turns[0][1]
    assert "temperature" in turns[1][0] and turns[1][1].startswith(("\n22", "22"))


def test_tools_may_come_as_a_list_in_openai_form():
    listed = [{"type": "function", "function": json.loads(TOOLS)[0]}]
    assert full_text("qwen", TOOL_CONVERSATION, tools=listed) == TOOL_GOLDEN["qwen"]


def test_qwen25_puts_its_own_default_system_before_the_tools():
    assert full_text("qwen2.5", TOOL_CONVERSATION[1:2], tools=TOOLS).startswith(
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.\n\n# Tools\n"
    )


def test_qwen_writes_parallel_calls_one_block_each():
    calls = json.dumps([{"name": "a", "arguments": {}}, {"name": "b", "arguments": "{\"x\": 1}"}])
    messages = [{"role": "user", "content": "go"}, {"role": "function", "content": calls}]
    assert get_template("qwen").render(stand_in("qwen"), messages, system="")[0][1] == (
        '<tool_call>\n{"name": "a", "arguments": {}}\n</tool_call>\n'
        '<tool_call>\n{"name": "b", "arguments": {"x": 1}}\n</tool_call><|im_end|>\n'
    )


def test_a_model_that_calls_one_tool_at_a_time_rejects_parallel_calls():
    calls = json.dumps([{"name": "a", "arguments": {}}, {"name": "b", "arguments": {}}])
    with pytest.raises(ValueError, match="one tool call per function message"):
        full_text("llama3", [{"role": "user", "content": "go"}, {"role": "function", "content": calls}])


def test_a_function_message_that_is_not_a_tool_call_is_reported():
    with pytest.raises(ValueError, match="must hold a tool call as JSON"):
        full_text("glm4", [{"role": "user", "content": "go"}, {"role": "function", "content": "get_weather(Paris)"}])


ONE_TOOL_ROLE = {
    "function": [{"role": "user", "content": "go"}, TOOL_CONVERSATION[2]],
    "observation": [{"role": "user", "content": "go"}, {"role": "assistant", "content": "ok"}, TOOL_CONVERSATION[3]],
}


@pytest.mark.parametrize("name", NO_TOOL_TEMPLATES)
@pytest.mark.parametrize("role", sorted(ONE_TOOL_ROLE))
def test_templates_without_tool_use_name_the_role_they_cannot_render(name, role):
    with pytest.raises(ConfigError, match=f"template '{name}' has no '{role}' role"):
        full_text(name, ONE_TOOL_ROLE[role])


@pytest.mark.parametrize("name", NO_TOOL_TEMPLATES)
def test_templates_without_tool_use_reject_tools(name):
    with pytest.raises(ConfigError, match=f"template '{name}' does not support tools"):
        full_text(name, CONVERSATION, tools=TOOLS)


PARIS_CALL = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}


def test_default_passes_tool_roles_in_hugging_face_form(tokenizer):
    turns = get_template("default").render(tokenizer, TOOL_CONVERSATION, tools=TOOLS)
    hf_form = [
        TOOL_CONVERSATION[0],
        TOOL_CONVERSATION[1],
        {"role": "assistant", "content": "", "tool_calls": [PARIS_CALL]},
        {"role": "tool", "content": '{"temperature": 22}'},
        TOOL_CONVERSATION[4],
    ]
    expected = tokenizer.apply_chat_template(hf_form, tools=parse_tools(TOOLS), tokenize=False)
    assert "".join(prompt + response for prompt, response in turns) == expected


class RecordingTokenizer:
    """One id per character, special tokens only by id, every text encoded recorded: like ChatGLM's tokenizer."""

    bos_token, eos_token, unk_token_id = None, "</s>", 0
    SPECIAL = {
        "[gMASK]": 1,
        "sop": 2,
        "<|system|>": 3,
        "<|user|>": 4,
        "<|assistant|>": 5,
        "<|observation|>": 6,
        "</s>": 7,
    }

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, texts: list[str], **options: bool) -> dict[str, list[list[int]]]:
        self.calls += texts
        return {"input_ids": [[ord(char) for char in text] for text in texts]}

    def convert_tokens_to_ids(self, token: str) -> int:
        return self.SPECIAL.get(token, self.unk_token_id)


def chars(text: str) -> list[int]:
    return [ord(char) for char in text]


def test_chatglm3_role_tokens_are_ids_and_each_part_is_encoded_alone():
    tokenizer = RecordingTokenizer()
    messages = [{"role": "user", "content": "sop <|user|>"}, {"role": "assistant", "content": "Hello!"}]
    [(prompt, response)] = encode_turns(get_template("chatglm3"), tokenizer, messages)
    assert prompt == [1, 2, 4, *chars("\n"), *chars("sop <|user|>"), 5]
    assert response == [*chars("\n"), *chars("Hello!"), 7]
    assert tokenizer.calls == ["\n", "sop <|user|>", "\n", "Hello!"]


def test_chatglm3_tool_calls_encode_the_name_line_and_the_code_separately():
    tokenizer = RecordingTokenizer()
    messages = [{"role": "user", "content": "go"}, TOOL_CONVERSATION[2]]
    encode_turns(get_template("chatglm3"), tokenizer, messages)
    assert tokenizer.calls[-2:] == ["get_weather\n", "```python\ntool_call(city='Paris')\n```"]


def test_string_formats_are_encoded_as_one_text_per_side():
    tokenizer = RecordingTokenizer()
    encode_turns(get_template("vicuna"), tokenizer, CONVERSATION[:3])
    assert tokenizer.calls == ["Be brief. USER: Hi ASSISTANT:", " Hello!</s>"]


def test_a_token_the_tokenizer_lacks_is_read_as_text(tokenizer):
    [(prompt, _)] = encode_turns(get_template("chatglm2"), tokenizer, CONVERSATION[1:2])
    assert tokenizer.decode(prompt) == "[gMASK]sop[Round 1]\n\n问：Hi\n\n答："


def test_encode_prompt_accepts_a_conversation_ending_on_a_tool_result(tokenizer):
    ids = encode_prompt(get_template("qwen"), tokenizer, TOOL_CONVERSATION[:4], tools=TOOLS)
    assert tokenizer.decode(ids).endswith("</tool_response><|im_end|>\n<|im_start|>assistant\n")
    with pytest.raises(ValueError, match="must end with a user or observation message"):
        encode_prompt(get_template("qwen"), tokenizer, TOOL_CONVERSATION[:3])


@pytest.mark.parametrize(
    ("messages", "error"),
    [
        ([{"role": "assistant", "content": "a"}], "message 0: expected role 'user' or 'observation', got 'assistant'"),
        (CONVERSATION[:2] + CONVERSATION[1:2], "message 2: expected role 'assistant' or 'function', got 'user'"),
        (CONVERSATION[:1], "the conversation has no user message"),
    ],
)
def test_broken_role_order_names_the_message_index(messages, error):
    with pytest.raises(ValueError, match=error):
        split_conversation(messages, None, "")


def test_tool_roles_take_their_sides_of_the_conversation():
    system, pairs = split_conversation(TOOL_CONVERSATION, None, "default")
    assert system == "Be brief."
    roles = [(query["role"], answer["role"]) for query, answer in pairs]
    assert roles == [("user", "function"), ("observation", "assistant")]


def test_braces_in_messages_are_text_not_placeholders():
    messages = [{"role": "user", "content": "{idx} {content} {system}"}, {"role": "assistant", "content": "{eos}"}]
    expected = "[gMASK]sop{tools}[Round 1]\n\n问：{idx} {content} {system}\n\n答：{eos}</s>"
    assert full_text("chatglm2", messages, system="{tools}") == expected
