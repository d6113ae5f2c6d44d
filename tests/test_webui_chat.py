"""The Chat tab's session: load a tiny model with an adapter from the workspace and stream answers."""

import pytest
from test_webui_support import make_workspace
from tiny_models import make_lora_adapter

from glmtune.errors import ConfigError
from glmtune.webui.chat_session import ChatChoice, ChatSession, conversation
from glmtune.webui.workspace import OutsideWorkspaceError, Workspace


@pytest.fixture
def session(tmp_path, tiny_llama_dir):
    root = make_workspace(tmp_path / "ws", tiny_llama_dir)
    make_lora_adapter(root / "models" / "tiny", root / "adapter", seed=1)
    return ChatSession(Workspace.at(root))


def test_answers_stream_as_growing_text_and_history_is_used(session):
    assert session.load(ChatChoice("models/tiny", "adapter", "qwen")) == "models/tiny + adapter"
    history = [{"role": "user", "content": "What is the capital of France?"}]
    partials = list(session.stream(history, "", 12, 0.0))
    assert partials and all(later.startswith(earlier) for earlier, later in zip(partials, partials[1:]))
    follow_up = [*history, {"role": "assistant", "content": partials[-1]}, {"role": "user", "content": "And Spain?"}]
    assert list(session.stream(follow_up, "You are terse.", 12, 0.0))


def test_gradio_message_parts_become_plain_text():
    history = [
        {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]},
        {"role": "assistant", "content": "Hello"},
    ]
    assert conversation(history) == [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello"}]


def test_chat_refuses_paths_outside_and_chatting_before_loading(session, tmp_path):
    with pytest.raises(ConfigError, match="load a model first"):
        session.stream([{"role": "user", "content": "hi"}], "", 8, 0.0)
    for model, adapter in [("../x", ""), ("models/tiny", "../../etc"), (str(tmp_path), "")]:
        with pytest.raises(OutsideWorkspaceError):
            session.load(ChatChoice(model, adapter, "qwen"))
    with pytest.raises(ConfigError, match="does not exist"):
        session.load(ChatChoice("models/tiny", "$(touch pwned)", "qwen"))
    assert not list(session.workspace.root.rglob("pwned"))
