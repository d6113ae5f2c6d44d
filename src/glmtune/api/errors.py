"""Every failure answers with OpenAI's error object, `{"error": {"message", "type", "param", "code"}}`.

FastAPI's own handlers answer `{"detail": ...}`, which OpenAI clients cannot read; these
replace them. Unexpected failures answer 500 with a generic message, while the traceback
goes to the server log only.
"""

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from glmtune.api import schemas
from glmtune.api.schemas import ErrorDetail, ErrorResponse

logger = logging.getLogger(__name__)

UNION_MEMBERS = frozenset({"str", "int", "float", "bool", "list", "dict"})
MODEL_NAMES = frozenset(
    name for name, value in vars(schemas).items() if isinstance(value, type) and issubclass(value, BaseModel)
)
TYPE_TAG = re.compile(r"[a-z-]+\[.*\]")  # pydantic's names of union members: list[TextPart], literal['none', ...]
HTTP_CODES = {400: "invalid_body", 404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}


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
        message, param = printable(message), printable(param)
        super().__init__(message)
        self.status = status
        self.detail = ErrorDetail(message=message, type=type, param=param, code=code)
        self.headers = headers

    def response(self) -> JSONResponse:
        return JSONResponse(ErrorResponse(error=self.detail).model_dump(), self.status, headers=self.headers)


def is_union_member(part: object) -> bool:
    """The member of a union field that pydantic tried: "str", "list[TextPart]", "NamedToolChoice"."""
    return isinstance(part, str) and (
        part in UNION_MEMBERS or part in MODEL_NAMES or TYPE_TAG.fullmatch(part) is not None
    )


def printable(text: str | None, limit: int = 2000) -> str | None:
    """Text an error can carry whatever the client sent: valid UTF-8 (surrogates escaped) and of bounded size."""
    if text is None:
        return None
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[:limit] + "..."


def field_path(location: tuple, last_is_key: bool = False) -> str | None:
    """pydantic's ("body", "messages", 0, "role") as OpenAI writes it: messages[0].role.

    For a union field pydantic inserts the member it tried ("str", "list[TextPart]"); the
    path leaves it out. `last_is_key`: the last part is the client's own key, kept as it is.
    """
    parts = location[1:] if location and location[0] == "body" else location
    path = ""
    for place, part in enumerate(parts):
        if is_union_member(part) and not (last_is_key and place == len(parts) - 1):
            continue
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path or None


def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    """The first problem, named by its param; a validator may name it through ctx: "param", or "field" below its loc."""
    first = error.errors()[0]
    kind = first.get("type")
    if kind == "json_invalid":
        return ApiError(400, f"the request body is not valid JSON: {first.get('msg')}", code="invalid_json").response()
    context = first.get("ctx") or {}
    param = field_path(tuple(first.get("loc", ())), last_is_key=kind == "extra_forbidden")
    if "param" in context:
        param = context["param"] or None
    elif "field" in context:
        param = f"{param}.{context['field']}" if param else str(context["field"])
    if kind == "extra_forbidden":
        message, kind = f"unrecognized request argument: {param}", "unknown_parameter"
    else:
        message = str(first.get("msg"))
        message = f"{param}: {message}" if param and not message.startswith(f"{param}:") else message
    return ApiError(400, message, param=param, code=kind).response()


def http_error(request: Request, error: HTTPException) -> JSONResponse:
    message = str(error.detail)
    if error.status_code == 400 and message == "There was an error parsing the body":  # FastAPI's words for it
        message = "the request body could not be read as JSON in UTF-8"
    return ApiError(
        error.status_code, message, code=HTTP_CODES.get(error.status_code), headers=error.headers
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
