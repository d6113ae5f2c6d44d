import io
import subprocess
import sys

from glmtune.chat.chat_model import ChatModel
from glmtune.chat.terminal import chat_loop
from glmtune.hparams import DataArguments, GeneratingArguments, ModelArguments


def test_scripted_session_clears_and_exits(tiny_llama_dir):
    chat_model = ChatModel.from_args(
        ModelArguments(model_name_or_path=str(tiny_llama_dir)),
        DataArguments(template="qwen"),
        GeneratingArguments(temperature=0, max_new_tokens=8),
    )
    prompts = []
    original = chat_model.stream_chat

    def recording(messages, **gen):
        prompts.append(len(messages))
        return original(messages, **gen)

    chat_model.stream_chat = recording
    stdout = io.StringIO()
    chat_loop(chat_model, io.StringIO("Hi\nAnd then?\nclear\nHi again\nexit\nnever read\n"), stdout)
    transcript = stdout.getvalue()
    assert prompts == [1, 3, 1]  # history grows, then `clear` resets it
    assert transcript.count("Assistant: ") == 3 and "History cleared." in transcript
    assert "tokens/s]" in transcript and "never read" not in transcript


def test_glmtune_chat_works_from_piped_stdin(tiny_llama_dir):
    result = subprocess.run(
        [sys.executable, "-m", "glmtune", "chat", "--model", str(tiny_llama_dir), "--template", "qwen",
         "--temperature", "0", "--max_new_tokens", "5", "--system", "Be brief."],
        input="Hello\nstop\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "User: Hello" in result.stdout and "Assistant: " in result.stdout and "tokens/s" in result.stdout


def test_glmtune_chat_reports_a_missing_model_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "glmtune", "chat", "--model", str(tmp_path / "missing")],
        input="",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr
