"""Run the app on uvicorn, with a graceful SIGTERM: /ready turns 503 at once (so a load
balancer stops sending), uvicorn stops accepting connections, requests in flight finish,
queued batches run, then the process exits."""

from __future__ import annotations

import logging

from ..core.messages import notice


def run_server(app, *, host: str = "127.0.0.1", port: int = 8080, log_level: str = "info") -> None:
    import uvicorn

    state = app.state.onnxport

    class GracefulServer(uvicorn.Server):
        def handle_exit(self, sig, frame):
            state.draining = True
            super().handle_exit(sig, frame)
            # uvicorn re-raises the signal after its graceful shutdown, which would kill the
            # process before the summary below; a drained stop is a clean exit (code 0)
            self._captured_signals.clear()

    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                            timeout_graceful_shutdown=None, lifespan="on")
    server = GracefulServer(config)
    for served in state.models.values():
        info = served.info()
        notice(f"onnxport: serving '{served.name}' ({info['task']}, {info['model_file']}, {info['verdict']}) "
               f"on routes {', '.join(served.routes)}")
    notice(f"onnxport: listening on http://{host}:{port} (GET /info, /ready, /metrics)"
           + ("; API key required" if state.api_key else ""))
    logging.getLogger("onnxport.serve").setLevel(log_level.upper())
    server.run()
    by_class: dict[str, float] = {}
    for (_, status), count in _counts(state.metrics.requests).items():
        by_class[status[0] + "xx"] = by_class.get(status[0] + "xx", 0) + count
    total = sum(by_class.values())
    notice(f"onnxport: stopped after {total:.0f} request{'' if total == 1 else 's'} ("
           + ", ".join(f"{by_class.get(k, 0):.0f} {k}" for k in ("2xx", "4xx", "5xx")) + ")")


def _counts(counter) -> dict[tuple[str, str], float]:
    """{(route, status): count} from a prometheus Counter with those labels."""
    found = {}
    for metric in counter.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                found[(sample.labels["route"], sample.labels["status"])] = sample.value
    return found
