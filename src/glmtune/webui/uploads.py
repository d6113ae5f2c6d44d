"""Gradio's upload route, switched off: no field of the page takes a file.

Gradio stores any client's upload in its temp folder and serves it back; its `max_file_size=0` refuses
files with content but still stores empty ones. This middleware answers every upload, empty or not,
before gradio sees it.
"""

from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

UPLOAD_ROUTE = "/gradio_api/upload"
REFUSAL = "this web UI takes no file uploads: put data files in the workspace folder instead"


class NoUploads:
    """Answer 403 to any request on gradio's upload route (also under a root path), whatever its size."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].rstrip("/").endswith(UPLOAD_ROUTE):
            await PlainTextResponse(REFUSAL, status_code=403)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def app_settings() -> dict[str, object]:
    """Settings for gradio's FastAPI app (launch's app_kwargs)."""
    return {"middleware": [Middleware(NoUploads)]}
