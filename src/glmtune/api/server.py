"""`glmtune api`: load the model the way `glmtune chat` does, then serve it with uvicorn."""

import logging
from collections.abc import Sequence
from pathlib import Path

from glmtune.default_model import DEFAULT_MODEL_ALIAS
from glmtune.hparams.api_args import ApiArguments
from glmtune.hparams.bind import check_exposure, reachable_from_others
from glmtune.hparams.model_args import ModelArguments

logger = logging.getLogger(__name__)


def served_name(model_args: ModelArguments, chosen: str | None) -> str:
    """The model id clients send: the chosen name, else the alias or the model's last path part."""
    if chosen:
        return chosen
    name = model_args.model_name_or_path or DEFAULT_MODEL_ALIAS
    return Path(name).name if Path(name).expanduser().exists() else name


def check_bind(api_args: ApiArguments) -> None:
    """Before the model loads: a host other machines reach needs the API key, or --allow-unauthenticated."""
    check_exposure(
        "api", api_args.host, bool(api_args.api_key), api_args.allow_unauthenticated, "set --api_key KEY (or GLMTUNE_API_KEY)"
    )
    if not reachable_from_others(api_args.host):
        return
    if api_args.api_key:
        logger.info("binding %s: the server is reachable from the network; requests need the API key", api_args.host)
    else:
        logger.warning("binding %s: the server is reachable from the network and has no API key", api_args.host)


def main(argv: Sequence[str]) -> int:
    import uvicorn

    from glmtune.api.app import create_app
    from glmtune.api.engine import Engine
    from glmtune.chat.chat_model import ChatModel
    from glmtune.hparams.entry import get_api_args

    model_args, data_args, generating_args, api_args = get_api_args(argv)
    check_bind(api_args)
    chat_model = ChatModel.from_args(model_args, data_args, generating_args)
    engine = Engine(chat_model, api_args.max_batch_size, api_args.max_waiting)
    app = create_app(engine, api_args, served_name(model_args, api_args.served_model_name))
    uvicorn.run(app, host=api_args.host, port=api_args.port, log_level="info")
    return 0
