"""A real browser against `glmtune webui`: train a tiny model from the page, watch the loss plot and the
job finish, then chat with the result. Debian's chromium, driven by Playwright; nothing is downloaded."""

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_webui_support import DATASET, make_workspace
from train_helpers import subprocess_env

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)"),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "glmtune webui exited early"
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout} s")


@pytest.fixture
def server(tmp_path, tiny_llama_dir) -> Iterator[tuple[str, Path]]:
    workspace = make_workspace(tmp_path / "ws", tiny_llama_dir)
    port = free_port()
    env = {**subprocess_env(tmp_path / "home"), "GRADIO_ANALYTICS_ENABLED": "False"}
    log = (tmp_path / "webui.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "glmtune", "webui", "--workspace", str(workspace), "--port", str(port)],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for_http(f"http://127.0.0.1:{port}/", process)
        yield f"http://127.0.0.1:{port}/", workspace
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def visible(page, selector: str):
    return page.locator(selector).filter(visible=True)


def fill(page, label: str, value: str) -> None:
    field = page.get_by_label(label, exact=True).filter(visible=True).first
    field.fill(value)
    field.press("Tab")


def choose(page, label: str, option: str, timeout_s: float = 60) -> None:
    """Pick a dropdown option; reopen the list while the server is still updating its choices."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    deadline = time.monotonic() + timeout_s
    while True:
        page.get_by_label(label, exact=True).filter(visible=True).first.click()
        try:
            page.get_by_role("option", name=option, exact=True).click(timeout=3000)
            break
        except PlaywrightTimeout:
            page.keyboard.press("Escape")  # an update re-rendered the list under us: open it again
            if time.monotonic() > deadline:
                raise
    page.keyboard.press("Escape")


def test_train_from_the_page_then_chat_with_the_result(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    url, workspace = server
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.goto(url)
        fill(page, "Model path (empty: the default smollm2-135m)", "models/tiny")
        choose(page, "Template", "qwen")
        fill(page, "Dataset folder (empty: glmtune's bundled datasets)", "data")
        page.get_by_role("button", name="Refresh datasets").filter(visible=True).first.click()
        choose(page, "Datasets", DATASET)
        for label, value in [
            ("Max steps (-1: by epochs)", "6"), ("Batch size per device (0: the default, glmtune's or the dataset's)", "2"), ("Cutoff length (tokens)", "64"),
            ("LoRA rank", "4"), ("Log every N steps", "1"), ("Save every N steps", "3"), ("Output folder", "outputs/browser"),
        ]:  # fmt: skip
            fill(page, label, value)
        command = page.locator("#train-command textarea")
        page.wait_for_function(  # each field's change re-renders the command; wait for the last one's
            "['--max_steps 6', 'outputs/browser'].every(part => "
            "document.querySelector('#train-command textarea').value.includes(part))"
        )
        assert "--lora_rank 4" in command.input_value()

        page.locator("#train-start").click()
        status = page.locator("#train-status")
        expect(status).to_contain_text("running", timeout=30_000)
        expect(page.locator("#train-loss canvas, #train-loss svg").first).to_be_visible(timeout=90_000)
        page.screenshot(path=shots / "training.png", full_page=True)
        expect(status).to_contain_text("finished", timeout=90_000)
        page.wait_for_function("document.querySelector('#train-log textarea').value.includes('train summary')")
        page.screenshot(path=shots / "trained.png", full_page=True)
        assert (workspace / "outputs" / "browser" / "adapter_model.safetensors").is_file()

        fill(page, "Output folder", "../escape")
        page.locator("#train-start").click()
        expect(page.get_by_text("outside the workspace").first).to_be_visible(timeout=15_000)
        page.screenshot(path=shots / "refused.png", full_page=True)
        assert not (workspace.parent / "escape").exists()

        # a preference stage: its own fields appear with it and reach the job
        fill(page, "Dataset folder (empty: glmtune's bundled datasets)", "")
        page.get_by_role("button", name="Refresh datasets").filter(visible=True).first.click()
        choose(page, "Datasets", "preference")
        choose(page, "Stage", "dpo")
        fill(page, "pref_beta", "0.2")
        fill(page, "Max steps (-1: by epochs)", "2")
        fill(page, "Output folder", "outputs/dpo")
        page.wait_for_function(
            "['--stage dpo', '--pref_beta 0.2', 'outputs/dpo'].every(part => "
            "document.querySelector('#train-command textarea').value.includes(part))"
        )
        page.locator("#train-start").click()
        adapter = workspace / "outputs" / "dpo" / "adapter_model.safetensors"
        deadline = time.monotonic() + 120
        while not adapter.is_file() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert adapter.is_file()
        assert "pref_beta: 0.2" in (workspace / "outputs" / "dpo" / "train_config.yaml").read_text(encoding="utf-8")
        page.screenshot(path=shots / "dpo.png", full_page=True)

        page.get_by_role("tab", name="Chat").click()
        fill(page, "Model path (empty: the default smollm2-135m)", "models/tiny")
        fill(page, "Adapter / checkpoint path", "outputs/browser")
        choose(page, "Template", "qwen")
        page.locator("#chat-load").click()
        expect(page.locator("#chat-loaded")).to_contain_text("✔", timeout=60_000)
        message = page.locator("#chat-message textarea")
        message.fill("What is 2 + 2?")
        message.press("Enter")
        expect(page.locator("#chat-bot")).to_contain_text("What is 2 + 2?", timeout=30_000)
        bot = page.locator("#chat-bot .bot").last
        expect(bot).not_to_be_empty(timeout=60_000)
        page.screenshot(path=shots / "chat.png", full_page=True)

        page.get_by_text("中文", exact=True).click()
        expect(page.get_by_role("tab", name="训练")).to_be_visible(timeout=10_000)
        page.screenshot(path=shots / "chinese.png", full_page=True)
        browser.close()
    assert sorted(path.name for path in shots.iterdir()) == ["chat.png", "chinese.png", "dpo.png", "refused.png", "trained.png", "training.png"]
