"""ASGI middleware for bearer-token auth and the request body size limit.

Both are plain ASGI (not BaseHTTPMiddleware), so server-sent event streams and client
disconnects pass through them untouched.
"""

import hmac

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from glmtune.api.errors import ApiError

OPEN_PATHS = frozenset({"/health"})


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


class BearerAuth:
    """Require `Authorization: Bearer KEY` on every route but /health, compared in constant time."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self.api_key = api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or self.authorized(scope):
            await self.app(scope, receive, send)
            return
        error = ApiError(
            401,
            "missing or wrong API key: send `Authorization: Bearer KEY`",
            type="authentication_error",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )
        await error.response()(scope, receive, send)

    def authorized(self, scope: Scope) -> bool:
        scheme, _, token = (header(scope, b"authorization") or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.api_key)


class BodySizeLimit:
    """Answer 413 to request bodies over `max_bytes`, declared or streamed, before the app reads them."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self.too_large().response()(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await self.too_large().response()(scope, receive, send)
                return
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        await self.app(scope, replay(bytes(body), message, receive), send)

    def too_large(self) -> ApiError:
        return ApiError(413, f"the request body exceeds {self.max_bytes} bytes", code="request_too_large")


def replay(body: bytes, last: Message, receive: Receive) -> Receive:
    """A receive that hands over the buffered body once, then listens to the client again (disconnects)."""
    pending = [{"type": "http.request", "body": body, "more_body": False} if last["type"] == "http.request" else last]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed
