"""The server's limits (batching, queue, payload, client batch size) as one frozen value,
checked when the server starts so a bad flag is an InputError, not a surprise under load."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from ..core.arguments import positive_int
from ..errors import InputError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2, "gb": 1000**3, "gib": 1024**3}


def parse_size(value: str | int, name: str = "payload limit") -> int:
    """Bytes from 2000000, '2MB' (10^6) or '2MiB' (2^20)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return positive_int(value, name)
    match = _SIZE.match(str(value))
    if not match:
        raise InputError(f"{name} {value!r} is not a size; write e.g. 2MB, 512KiB or 1048576")
    size = int(float(match.group(1)) * _UNITS[(match.group(2) or "b").lower()])
    if size < 1:
        raise InputError(f"{name} must be at least 1 byte, not {value!r}")
    return size


@dataclass(frozen=True)
class Limits:
    """What one server accepts. Defaults follow text-embeddings-inference's where it has one."""

    max_batch_tokens: int = 16384      # padded tokens taken from the queue together: longest × count
    max_batch_requests: int = 64       # requests merged into one model run
    max_client_batch_size: int = 256   # items in one request
    max_queue: int = 1024              # items waiting per model; more is a 429
    payload_limit: int = 2_000_000     # bytes of one request body; more is a 413
    run_tokens: int | None = None      # padded tokens per model run; None: see `model_run_tokens`

    def __post_init__(self):
        for name, value in asdict(self).items():
            if value is not None or name != "run_tokens":
                positive_int(value, name.replace("_", "-"))
        if self.max_client_batch_size > self.max_queue:
            raise InputError(f"max-client-batch-size {self.max_client_batch_size} is larger than max-queue "
                             f"{self.max_queue}, so a full request could never be queued; lower the first or "
                             "raise the second")

    def as_dict(self) -> dict[str, int | None]:
        return asdict(self)

    def model_run_tokens(self, on_gpu: bool) -> int:
        """Padded tokens per model run: as asked, else the whole batch on a GPU, and on a CPU
        `CPU_RUN_TOKENS` (never more than max_batch_tokens)."""
        if self.run_tokens is not None:
            return self.run_tokens
        return self.max_batch_tokens if on_gpu else min(CPU_RUN_TOKENS, self.max_batch_tokens)


# On a CPU, onnxruntime's cost per text rises once a run's activations outgrow the caches:
# all-MiniLM-L6-v2 over 1,000 mixed texts, length-sorted runs of at most N padded tokens
# (AMD EPYC, 2 cores, AVX2): 256 → 81 texts/s, 1024 → 90, 4096 → 80, 16384 → 59. A GPU
# wants the opposite (the biggest batch), so this applies to CPU sessions only.
CPU_RUN_TOKENS = 1024
