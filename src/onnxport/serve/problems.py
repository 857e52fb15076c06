"""Errors a client can cause, and how they look on the wire: OpenAI's error object under
/v1/, text-embeddings-inference's ({"error", "error_type"}) elsewhere, so each family of
clients reads the errors it knows. A client's mistake is always a 4xx, never a 500."""

from __future__ import annotations

from starlette.responses import JSONResponse

# text-embeddings-inference's error_type for each status.
_TEI_TYPES = {400: "Validation", 401: "Unauthorized", 404: "Validation", 413: "Validation",
              422: "Validation", 429: "Overloaded", 499: "Cancelled", 500: "Backend", 503: "Unhealthy"}
# OpenAI's error type for each status.
_OPENAI_TYPES = {401: "authentication_error", 404: "invalid_request_error", 429: "rate_limit_error",
                 500: "server_error", 503: "server_error"}


class Problem(Exception):
    """A request that cannot be served: the HTTP status, a message that says what to change,
    and a short machine-readable `reason` (also the failure label in /metrics)."""

    def __init__(self, status: int, message: str, *, reason: str, param: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason
        self.param = param
        self.headers = headers or {}


def is_openai_path(path: str) -> bool:
    return path.startswith("/v1/")


def problem_body(path: str, problem: Problem) -> dict:
    if is_openai_path(path):
        return {"error": {"message": problem.message,
                          "type": _OPENAI_TYPES.get(problem.status, "invalid_request_error"),
                          "param": problem.param, "code": problem.reason}}
    return {"error": problem.message, "error_type": _TEI_TYPES.get(problem.status, "Validation")}


def problem_response(path: str, problem: Problem) -> JSONResponse:
    return JSONResponse(problem_body(path, problem), status_code=problem.status, headers=problem.headers)


# What each union-typed field accepts, for one clear message instead of pydantic's one per branch.
FIELD_SHAPES = {
    "input": "a string, a list of strings, a list of token ids, or a list of lists of token ids",
    "inputs": "a string or a list of strings",
}
_UNION_TAGS = ("str", "int", "list[", "function-")


def validation_message(errors: list[dict]) -> str:
    """FastAPI/pydantic validation errors as one readable line: which field, what it must be,
    and (from the most specific error) which item is wrong."""
    parts: dict[str, str] = {}
    depth: dict[str, int] = {}
    for error in errors:
        location = [part for part in error.get("loc", ()) if part != "body"]
        if error.get("type") == "json_invalid":
            parts["json"] = f"the body is not valid JSON ({error.get('ctx', {}).get('error', 'parse error')})"
            continue
        if not location:
            parts["body"] = "the body must be a JSON object, e.g. {\"inputs\": [\"a text\"]}"
            continue
        field = str(location[0])
        indices = [p for p in location[1:] if isinstance(p, int)]
        if field in FIELD_SHAPES and any(isinstance(p, str) and p.startswith(_UNION_TAGS) for p in location[1:]):
            if len(indices) < depth.get(field, -1):
                continue  # keep the most specific branch's complaint
            where = field + "".join(f"[{i}]" for i in indices)
            got = f"{where} is {error.get('input')!r}" if indices else f"got {type(error.get('input')).__name__}"
            parts[field] = f"{field} must be {FIELD_SHAPES[field]}; {got}"
            depth[field] = len(indices)
            continue
        where = field + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in location[1:])
        parts.setdefault(where, f"{where}: {error.get('msg', 'invalid')}")
    messages = list(parts.values())
    more = f" (and {len(messages) - 3} more)" if len(messages) > 3 else ""
    return "; ".join(messages[:3]) + more
