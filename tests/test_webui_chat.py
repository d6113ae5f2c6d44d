"""The Chat tab's session: load a tiny model with an adapter from the workspace and stream answers."""

import pytest
from test_webui_support import make_workspace
from tiny_models import make_lora_adapter

from glmtune.chat.context_window import ContextLengthExceeded, token_budget
from glmtune.errors import ConfigError, GlmtuneError
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


def test_a_conversation_over_the_context_is_refused_before_generating(session):
    """The tiny model holds 512 positions: 700 words do not fit, nor do 500 new tokens after a short question."""
    session.load(ChatChoice("models/tiny", "", "qwen"))
    long = [{"role": "user", "content": " ".join(["capital"] * 700)}]
    with pytest.raises(ContextLengthExceeded, match=r"plus max_new_tokens \(8\) exceeds the model's context of 512"):
        session.stream(long, "", 8, 0.0)
    with pytest.raises(ContextLengthExceeded, match=r"max_new_tokens \(500\)"):
        session.stream([{"role": "user", "content": "hi"}], "", 500, 0.0)
    assert issubclass(ContextLengthExceeded, GlmtuneError)  # so the page shows its message, not a traceback
    assert list(session.stream([{"role": "user", "content": "hi"}], "", 8, 0.0))


def test_the_budget_rule_the_api_shares():
    assert token_budget(512, 500, 12, 100, "max_tokens") == 12
    assert token_budget(512, 500, None, 100, "max_tokens") == 12  # the default is cut to the room left
    with pytest.raises(ContextLengthExceeded) as caught:
        token_budget(512, 500, 13, 100, "max_tokens")
    assert caught.value.requested
    with pytest.raises(ContextLengthExceeded) as caught:
        token_budget(512, 600, None, 100, "max_tokens")
    assert not caught.value.requested
