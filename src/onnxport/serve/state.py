"""What every route of one server shares: its models, limits, metrics, key and readiness."""

from __future__ import annotations

from dataclasses import dataclass

from .limits import Limits
from .metrics import ServeMetrics
from .models import ServedModel
from .problems import Problem


@dataclass
class ServerState:
    models: dict[str, ServedModel]
    limits: Limits
    metrics: ServeMetrics
    api_key: str | None = None
    ready: bool = False      # models loaded and warmed up
    draining: bool = False   # SIGTERM received: finish in-flight work, take no more

    @property
    def default(self) -> ServedModel:
        return next(iter(self.models.values()))

    def model(self, name: str | None, route: str) -> ServedModel:
        """The model a request names (default: the first), checked to serve `route`."""
        if name is None:
            served = self.default
        else:
            served = self.models.get(name)
            if served is None:
                raise Problem(404, f"no model named '{name}' is served here; choose one of "
                                   f"{', '.join(self.models)} (GET /v1/models)", reason="model_not_found",
                              param="model")
        served.require(route)
        return served
