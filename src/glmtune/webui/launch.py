"""`glmtune webui`: its flags and the launch, on 127.0.0.1 unless told otherwise.

Gradio and the page are imported only after the flags parse, so `glmtune webui --help`
answers at once.
"""

import argparse
import logging
from collections.abc import Sequence

from glmtune.errors import ConfigError
from glmtune.hparams.bind import ALLOW_FLAG, check_exposure, reachable_from_others
from glmtune.webui.workspace import Workspace

logger = logging.getLogger(__name__)

def parse_auth(value: str | None) -> tuple[str, str] | None:
    if value is None:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise ConfigError("--auth takes user:password")
    return user, password


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="glmtune webui", description="Train, evaluate, chat and export in a browser.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind; 127.0.0.1 keeps the UI on this machine")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--workspace", default=".", help="the only folder the UI reads and writes (default: here)")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    parser.add_argument("--auth", metavar="USER:PASSWORD", help="ask for this username and password")
    parser.add_argument(
        ALLOW_FLAG, action="store_true", help="serve a non-loopback --host or --share without --auth (refused otherwise)"
    )
    return parser.parse_args(list(argv))


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    auth = parse_auth(args.auth)
    check_exposure("webui", args.host, auth is not None, args.allow_unauthenticated, "add --auth USER:PASSWORD", args.share)
    workspace = Workspace.at(args.workspace)
    if reachable_from_others(args.host, args.share) and auth is None:
        logger.warning("the web UI starts jobs and reads files in %s and anyone reaching it may use it", workspace.root)
    from glmtune.webui.app import build_app

    demo = build_app(workspace)
    demo.queue().launch(**launch_options(args, auth))
    return 0


def launch_options(args: argparse.Namespace, auth: tuple[str, str] | None) -> dict[str, object]:
    """Gradio's launch settings; its upload route is switched off (webui/uploads.py)."""
    from glmtune.webui.uploads import app_settings

    return {
        "server_name": args.host,
        "server_port": args.port,
        "share": args.share,
        "auth": auth,
        "show_error": False,
        "app_kwargs": app_settings(),
    }
