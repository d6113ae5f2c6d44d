"""Every failure answers with OpenAI's error object, `{"error": {"message", "type", "param", "code"}}`.

FastAPI's own handlers answer `{"detail": ...}`, which OpenAI clients cannot read; these
replace them. Unexpected failures answer 500 with a generic message, while the traceback
goes to the server log only.
"""

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from glmtune.api.schemas import ErrorDetail, ErrorResponse

logger = logging.getLogger(__name__)

UNION_MEMBERS = frozenset({"str", "int", "float", "bool", "list", "dict"})
HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}


class ApiError(Exception):
    """A failure the client should see, with its HTTP status and OpenAI error fields."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.detail = ErrorDetail(message=message, type=type, param=param, code=code)
        self.headers = headers

    def response(self) -> JSONResponse:
        return JSONResponse(ErrorResponse(error=self.detail).model_dump(), self.status, headers=self.headers)


def field_path(location: tuple) -> str | None:
    """pydantic's ("body", "messages", 0, "role") as OpenAI writes it: messages[0].role.

    For a union field pydantic appends the member it tried ("str", "list[TextPart]"); the
    path ends before it, at the field itself.
    """
    path = ""
    for part in location[1:] if location and location[0] == "body" else location:
        if isinstance(part, str) and (part in UNION_MEMBERS or "[" in part):
            break
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path or None


def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    first = error.errors()[0]
    if first.get("type") == "json_invalid":
        return ApiError(400, f"the request body is not valid JSON: {first.get('msg')}", code="invalid_json").response()
    param = field_path(tuple(first.get("loc", ())))
    message = f"{param}: {first.get('msg')}" if param else str(first.get("msg"))
    return ApiError(400, message, param=param, code=first.get("type")).response()


def http_error(request: Request, error: HTTPException) -> JSONResponse:
    return ApiError(
        error.status_code, str(error.detail), code=HTTP_CODES.get(error.status_code), headers=error.headers
    ).response()


def api_error(request: Request, error: ApiError) -> JSONResponse:
    return error.response()


def unexpected_error(request: Request, error: Exception) -> JSONResponse:
    # Starlette re-raises the exception after this response, so the server log keeps the traceback.
    return ApiError(500, "internal server error; the server log has the details", type="server_error").response()


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(Exception, unexpected_error)
