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
# ... where the field also takes sentence pairs (/classify)
_PAIRS_SHAPE = ", or a list of [first, second] sentence pairs"


def validation_message(errors: list[dict]) -> str:
    """FastAPI/pydantic validation errors as one readable line: which field, what it must be,
    and which item is wrong. For a union field, pydantic reports every branch it tried; the
    branch with the fewest complaints is the one the client meant, so its first one is named."""
    parts: dict[str, str] = {}
    branches: dict[str, dict[str, list]] = {}
    for error in errors:
        location = [part for part in error.get("loc", ()) if part != "body"]
        if error.get("type") == "json_invalid":
            parts["json"] = f"the body is not valid JSON ({error.get('ctx', {}).get('error', 'parse error')})"
            continue
        if not location:
            parts["body"] = "the body must be a JSON object, e.g. {\"inputs\": [\"a text\"]}"
            continue
        field = str(location[0])
        tags = [p for p in location[1:] if isinstance(p, str) and p.startswith(_UNION_TAGS)]
        if field in FIELD_SHAPES and tags:
            parts.setdefault(field, "")  # keeps the field's place in the message
            branches.setdefault(field, {}).setdefault(tags[0], []).append(error)
            continue
        where = field + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in location[1:])
        parts.setdefault(where, f"{where}: {error.get('msg', 'invalid')}")
    for field, by_branch in branches.items():
        # a list was sent when some branch reached its items: the scalar branch ("got list") is moot then
        itemized = [found for found in by_branch.values() if any(isinstance(p, int) for p in found[0]["loc"])]
        # fewest complaints; on a tie, the branch that got further before its first one
        error = min(itemized or list(by_branch.values()),
                    key=lambda found: (len(found), -next((p for p in found[0]["loc"] if isinstance(p, int)), 0)))[0]
        indices = [p for p in error["loc"] if isinstance(p, int)]
        where = field + "".join(f"[{i}]" for i in indices)
        got = f"{where} is {error.get('input')!r}" if indices else f"got {type(error.get('input')).__name__}"
        shape = FIELD_SHAPES[field] + (_PAIRS_SHAPE if any("tuple[" in tag for tag in by_branch) else "")
        parts[field] = f"{field} must be {shape}; {got}"
    messages = list(parts.values())
    more = f" (and {len(messages) - 3} more)" if len(messages) > 3 else ""
    return "; ".join(messages[:3]) + more
