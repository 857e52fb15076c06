"""An ASGI middleware in front of every route: counts requests by route and status, checks
the API key (constant-time; /health, /ready and /metrics stay open) and the body size
(Content-Length or counted while reading, so a chunked upload cannot get past it)."""

from __future__ import annotations

import hmac

from .api_status import OPEN_PATHS
from .problems import Problem, problem_response

KNOWN_ROUTES = frozenset({"/v1/embeddings", "/v1/models", "/embed", "/rerank", "/classify", "/ner", "/tokenize",
                          "/info", *OPEN_PATHS})


def route_label(path: str) -> str:
    """The path for known routes; 'other' for the rest, so random paths cannot flood /metrics."""
    return path if path in KNOWN_ROUTES else "other"


def bearer_token(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    for key, value in headers:
        if key.lower() == b"authorization":
            scheme, _, token = value.partition(b" ")
            return token.strip() if scheme.lower() == b"bearer" else None
    return None


class Guard:
    def __init__(self, app, state):
        self.app = app
        self.state = state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        metrics = self.state.metrics
        status = []

        async def counted_send(message):
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        try:
            if self.state.api_key and path not in OPEN_PATHS:
                self._check_key(scope)
            if scope["method"] in ("POST", "PUT", "PATCH"):
                receive = await self._limited_body(scope, receive)
                # Every body here is JSON, whatever it is labelled (`curl -d` says form data):
                # read it as JSON, so a bad body gets a JSON error, not "expected an object".
                scope = dict(scope, headers=[(k, v) for k, v in scope["headers"] if k != b"content-type"]
                             + [(b"content-type", b"application/json")])
        except Problem as problem:
            metrics.failures.labels(route_label(path), problem.reason).inc()
            await problem_response(path, problem)(scope, receive, counted_send)
        else:
            await self.app(scope, receive, counted_send)
        metrics.requests.labels(route_label(path), str(status[0] if status else 499)).inc()

    def _check_key(self, scope) -> None:
        token = bearer_token(scope["headers"])
        if token is None:
            raise Problem(401, "this server needs an API key: send the header 'Authorization: Bearer KEY'",
                          reason="missing_api_key", headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(token, self.state.api_key.encode()):
            raise Problem(401, "the API key is wrong; check the key this server was started with",
                          reason="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})

    async def _limited_body(self, scope, receive):
        """Read the whole body (at most the payload limit), then replay it to the app; after
        the body, the app's receive() reaches the client's (so disconnects are seen)."""
        limit = self.state.limits.payload_limit
        too_big = Problem(413, f"the request body is larger than this server's limit of {limit} bytes; send "
                               "fewer or shorter items per request", reason="payload_too_large")
        for key, value in scope["headers"]:
            if key == b"content-length" and value.isdigit() and int(value) > limit:
                raise too_big
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise Problem(499, "the client disconnected while sending its request", reason="client_disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise too_big
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay
