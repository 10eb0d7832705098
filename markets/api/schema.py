"""OpenAPI post-processing: the error responses every operation can give, documented once.

Applied to every operation in the schema (later endpoints included), so clients and the
Schemathesis run in the tests know that a 400, 404 or 429 is a documented JSON `Error`.
"""

from __future__ import annotations

from typing import Any

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every error has this shape.",
    "properties": {
        "detail": {"type": "string", "description": "What went wrong and what to do, in one sentence."},
        "code": {
            "type": "string",
            "description": "Machine-readable, e.g. `invalid`, `not_found`, `throttled`.",
        },
        "errors": {
            "type": "object",
            "additionalProperties": True,
            "description": "For `invalid`: the messages for each parameter or field.",
        },
    },
    "required": ["detail", "code"],
}

_SAFE_METHODS = {"get", "head", "options"}
_REF = {"$ref": "#/components/schemas/Error"}


def _response(description: str, **extra: Any) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _REF}}, **extra}


def add_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular POSTPROCESSING_HOOKS entry."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    for path_item in result.get("paths", {}).values():
        for method, operation in path_item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            params = operation.get("parameters", [])
            wanted: dict[str, dict[str, Any]] = {}
            if any(p.get("in") == "query" for p in params) or "requestBody" in operation:
                wanted["400"] = _response("Invalid parameter or body; `errors` says which and why.")
            if method not in _SAFE_METHODS:
                wanted["401"] = _response("Authentication (session or token) is required to write.")
                wanted["403"] = _response("Not allowed: sign in, or send `Authorization: Token <key>`.")
            if any(p.get("in") == "path" for p in params) or any(p.get("name") == "page" for p in params):
                wanted["404"] = _response("No such object, or a page past the last one.")
            wanted["429"] = _response(
                "Throttled; retry after the number of seconds in `Retry-After`.",
                headers={"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}},
            )
            for code, response in wanted.items():
                operation["responses"].setdefault(code, response)
    return result
