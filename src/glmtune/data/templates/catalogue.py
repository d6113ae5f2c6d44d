"""The template catalogue: every named chat format, as its model documents it (sources: test_templates_golden.py)."""

from glmtune.data.templates.engine import ChatFormat, Template, TokenizerChatTemplate
from glmtune.data.templates.tools import (
    CHATGLM3_TOOLS,
    GLM4_TOOLS,
    LLAMA3_TOOLS,
    QWEN_TOOLS,
)
from glmtune.errors import look_up

CHATML = {
    "user": "<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n",
    "assistant": "{content}<|im_end|>\n",
    "system": "<|im_start|>system\n{content}<|im_end|>\n",
    "stops": ("<|im_end|>",),
}
QWEN_TOOL_ROLES = {
    "observation": "<|im_start|>user\n<tool_response>\n{content}\n</tool_response><|im_end|>\n<|im_start|>assistant\n",
    "function": "{content}<|im_end|>\n",
    "tools": QWEN_TOOLS,
}
GLM_STOPS = ("<|user|>", "<|observation|>")
LLAMA3_HEADER = "<|start_header_id|>{role}<|end_header_id|>\n\n"


def llama3_turn(role: str, then: str = "") -> str:
    return LLAMA3_HEADER.format(role=role) + "{content}<|eot_id|>" + then


def registry(*templates: ChatFormat) -> dict[str, ChatFormat]:
    return {template.name: template for template in templates}


TEMPLATES: dict[str, ChatFormat] = registry(
    TokenizerChatTemplate(),
    Template(name="empty", user="{content}", assistant="{content}{eos}"),
    Template(
        name="chatglm2",
        prefix=("[gMASK]", "sop"),
        user="[Round {idx}]\n\n问：{content}\n\n答：",
        assistant="{content}",
        separator="\n\n",
        end="{eos}",
        special_tokens=("[gMASK]", "sop"),
    ),
    Template(
        name="chatglm3",
        prefix=("[gMASK]", "sop"),
        system=("<|system|>", "\n", "{content}"),
        user=("<|user|>", "\n", "{content}", "<|assistant|>"),
        assistant=("\n", "{content}"),
        observation=("<|observation|>", "\n", "{content}", "<|assistant|>"),
        function="{content}",
        tools=CHATGLM3_TOOLS,
        end="{eos}",
        stops=GLM_STOPS,
        special_tokens=("[gMASK]", "sop", "<|system|>", "<|user|>", "<|assistant|>", "<|observation|>"),
    ),
    Template(
        name="glm4",
        prefix="[gMASK]<sop>",
        system="<|system|>\n{content}",
        user="<|user|>\n{content}<|assistant|>",
        assistant="\n{content}",
        observation="<|observation|>\n{content}<|assistant|>",
        function="{content}",
        tools=GLM4_TOOLS,
        end="{eos}",
        stops=GLM_STOPS,
    ),
    Template(
        name="baichuan",
        user=("<reserved_102>", "{content}", "<reserved_103>"),
        assistant="{content}",
        end="{eos}",
        stops=("<reserved_102>",),
        special_tokens=("<reserved_102>", "<reserved_103>"),
    ),
    Template(
        name="baichuan2",
        user=("<reserved_106>", "{content}", "<reserved_107>"),
        assistant="{content}",
        end="{eos}",
        stops=("<reserved_106>",),
        special_tokens=("<reserved_106>", "<reserved_107>"),
    ),
    Template(
        name="llama2",
        system="<<SYS>>\n{content}\n<</SYS>>\n\n",
        user="{bos}[INST] {system}{content} [/INST]",
        assistant=" {content} {eos}",
    ),
    Template(
        name="llama3",
        prefix="{bos}",
        system=llama3_turn("system"),
        user=llama3_turn("user", then=LLAMA3_HEADER.format(role="assistant")),
        assistant="{content}<|eot_id|>",
        observation=llama3_turn("ipython", then=LLAMA3_HEADER.format(role="assistant")),
        function="{content}<|eot_id|>",
        tools=LLAMA3_TOOLS,
        stops=("<|eot_id|>", "<|eom_id|>"),
    ),
    Template(name="qwen", default_system="You are a helpful assistant.", **CHATML, **QWEN_TOOL_ROLES),
    Template(
        name="qwen2.5",
        default_system="You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
        **CHATML,
        **QWEN_TOOL_ROLES,
    ),
    Template(
        name="smollm2",
        default_system="You are a helpful AI assistant named SmolLM, trained by Hugging Face",
        **CHATML,
    ),
    Template(name="chatml", **CHATML),
    Template(name="yi", **CHATML),
    Template(
        name="alpaca",
        system="{content}\n\n",
        user="### Instruction:\n{content}\n\n### Response:",
        assistant="{content}{eos}",
        separator="\n\n",
        default_system=(
            "Below is an instruction that describes a task. Write a response that appropriately completes the request."
        ),
    ),
    Template(
        name="vicuna",
        system="{content} ",
        user="USER: {content} ASSISTANT:",
        assistant=" {content}{eos}",
        default_system=(
            "A chat between a curious user and an artificial intelligence assistant. "
            "The assistant gives helpful, detailed, and polite answers to the user's questions."
        ),
    ),
    Template(
        name="deepseek",
        prefix="{bos}",
        system="{content}\n\n",
        user="User: {content}\n\nAssistant:",
        assistant=" {content}{eos}",
    ),
    Template(
        name="gemma",
        prefix="{bos}",
        system="{content}\n\n",
        user="<start_of_turn>user\n{system}{content}<end_of_turn>\n<start_of_turn>model\n",
        assistant="{content}<end_of_turn>\n",
        stops=("<end_of_turn>",),
    ),
)

TOOL_TEMPLATES_HINT = "templates with tool use: " + ", ".join(
    name for name, template in TEMPLATES.items() if isinstance(template, Template) and template.tools
)


def get_template(name: str) -> ChatFormat:
    return look_up(dict(sorted(TEMPLATES.items())), name, "template")
