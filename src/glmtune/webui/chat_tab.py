"""The Chat tab: load a base model with an adapter and talk to it, answers streamed as they are generated."""

from collections.abc import Iterator
from typing import Any

import gradio as gr

from glmtune.webui.chat_session import ChatChoice
from glmtune.webui.context import Context
from glmtune.webui.i18n import LANGUAGES, text
from glmtune.webui.ui_errors import shown_in_page

History = list[dict[str, Any]]


def build_chat_tab(context: Context) -> None:
    session = context.chat
    with gr.Row():
        model = context.textbox("model", placeholder="models/my-model", scale=2)
        adapter = context.textbox("adapter", placeholder="outputs/train-...", scale=2)
        template = context.template_dropdown()
    with gr.Row():
        load = context.button("load_model", variant="primary", elem_id="chat-load")
        unload = context.button("unload_model")
        loaded = gr.Markdown(elem_id="chat-loaded")
    with gr.Row():
        system = context.textbox("system", scale=3)
        max_new_tokens = context.number("max_new_tokens", value=128, precision=0, minimum=1)
        temperature = context.labels.add(
            gr.Slider(0, 1.5, value=0.7, step=0.05, label=text("temperature", LANGUAGES[0])), "temperature"
        )
    chatbot = context.labels.add(gr.Chatbot(label=text("chatbot", LANGUAGES[0]), elem_id="chat-bot"), "chatbot")
    with gr.Row():
        message = context.textbox("message", scale=5, elem_id="chat-message")
        send = context.button("send", variant="primary", scale=0, elem_id="chat-send")
        clear = context.button("clear", scale=0, elem_id="chat-clear")

    @shown_in_page
    def load_model(model_text: str, adapter_text: str, template_name: str) -> tuple[str, float]:
        """The slider moves to the model's own temperature (its generation_config's, else glmtune's)."""
        loaded_name = session.load(ChatChoice(model_text, adapter_text, template_name))
        return f"✔ {loaded_name}", session.default_temperature()

    def unload_model() -> str:
        session.unload()
        return ""

    @shown_in_page
    def answer(text_in: str, history: History, system_text: str, new_tokens: float, temp: float) -> Iterator[tuple]:
        if not text_in.strip():
            yield text_in, history
            return
        history = [*history, {"role": "user", "content": text_in}]
        partials = session.stream(history, system_text, int(new_tokens), float(temp))
        yield "", [*history, {"role": "assistant", "content": ""}]
        for partial in partials:
            yield "", [*history, {"role": "assistant", "content": partial}]

    load.click(load_model, [model, adapter, template], [loaded, temperature])
    unload.click(unload_model, None, loaded)
    chat_inputs = [message, chatbot, system, max_new_tokens, temperature]
    message.submit(answer, chat_inputs, [message, chatbot])
    send.click(answer, chat_inputs, [message, chatbot])
    clear.click(lambda: ("", []), None, [message, chatbot])
