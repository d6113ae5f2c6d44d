"""Both servers refuse to serve other machines without auth: `glmtune api` needs a key and `glmtune webui` needs
--auth for a non-loopback host (or a share link), unless --allow-unauthenticated says so. Nothing binds here: the
refusal comes before the model loads, and the launch itself is replaced by a recorder."""

import gradio as gr
import pytest

from glmtune import cli
from glmtune.chat.chat_model import ChatModel
from glmtune.hparams.bind import is_loopback


class Loaded(Exception):
    """Raised where `glmtune api` would load its model: the bind check has passed."""


@pytest.fixture
def api_model_load(monkeypatch):
    monkeypatch.delenv("GLMTUNE_API_KEY", raising=False)

    def load(*args, **kwargs):
        raise Loaded

    monkeypatch.setattr(ChatModel, "from_args", load)


@pytest.fixture
def webui_launches(monkeypatch):
    calls = []
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kwargs: calls.append(kwargs))
    return calls


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost", "LOCALHOST"])
def test_loopback_hosts(host):
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "10.0.0.1", "example.com", "localhost.evil.com", ""])
def test_hosts_other_machines_may_reach(host):
    assert not is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5"])
def test_api_on_a_public_host_without_a_key_refuses_in_one_line(api_model_load, capsys, host):
    assert cli.main(["api", "--host", host]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "Traceback" not in error
    assert f"--host {host}" in error and "--api_key" in error and "--allow-unauthenticated" in error


@pytest.mark.parametrize(
    "argv",
    [
        ["--host", "0.0.0.0", "--api_key", "k3y"],
        ["--host", "0.0.0.0", "--allow-unauthenticated"],
        ["--host", "127.0.0.1"],
        ["--host", "localhost"],
        [],
    ],
)
def test_api_with_a_key_an_explicit_opt_out_or_on_loopback_starts(api_model_load, argv):
    with pytest.raises(Loaded):
        cli.main(["api", *argv])


def test_api_key_from_the_environment_counts(api_model_load, monkeypatch):
    monkeypatch.setenv("GLMTUNE_API_KEY", "k3y")
    with pytest.raises(Loaded):
        cli.main(["api", "--host", "0.0.0.0"])


@pytest.mark.parametrize("argv", [["--host", "0.0.0.0"], ["--host", "::"], ["--share"]])
def test_webui_open_to_others_without_auth_refuses_in_one_line(webui_launches, capsys, tmp_path, argv):
    assert cli.main(["webui", "--workspace", str(tmp_path), *argv]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "Traceback" not in error
    assert "--auth" in error and "--allow-unauthenticated" in error
    assert webui_launches == []


@pytest.mark.parametrize(
    "argv",
    [
        ["--host", "0.0.0.0", "--auth", "ann:pw"],
        ["--host", "0.0.0.0", "--allow-unauthenticated"],
        ["--share", "--auth", "ann:pw"],
        ["--host", "::1"],
    ],
)
def test_webui_with_auth_an_explicit_opt_out_or_on_loopback_starts(webui_launches, tmp_path, argv):
    assert cli.main(["webui", "--workspace", str(tmp_path), *argv]) == 0
    assert len(webui_launches) == 1
