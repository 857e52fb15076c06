"""Ray, imported on demand, and the few calls whose arguments changed between Ray versions.

Ray is an optional extra (`onnxport[ray]`); `import_ray` says how to install it. Supported:
Ray Data 2.9 and newer. The actor pool of `map_batches` is `concurrency=N` in 2.9–2.50 and
`compute=ActorPoolStrategy(size=N)` again from 2.51 (where `concurrency` is deprecated);
`repartition(target_num_rows_per_block=...)`, a streaming split, exists only in newer
releases.
"""

from __future__ import annotations

import inspect
from typing import Any

from ..errors import MissingDependency

INSTALL_HINT = 'pip install "onnxport[ray]"'
MIN_RAY = (2, 9)
# The release where `compute=ActorPoolStrategy(size=N)` became the way again.
COMPUTE_STRATEGY_FROM = (2, 51)


def import_ray() -> Any:
    """The `ray` module with Ray Data, or MissingDependency with the install command."""
    try:
        import ray
        import ray.data  # noqa: F401  (ray without its [data] extra lacks pyarrow/pandas glue)
    except ImportError as error:
        raise MissingDependency(
            f"--engine ray needs Ray Data ({error.name or 'ray'} is missing); install it with: {INSTALL_HINT}"
        ) from None
    if version_tuple(ray.__version__) < MIN_RAY:
        raise MissingDependency(
            f"Ray {ray.__version__} is too old for onnxport (needs {'.'.join(map(str, MIN_RAY))} or newer); "
            f"upgrade it with: {INSTALL_HINT} --upgrade")
    return ray


def version_tuple(version: str) -> tuple[int, int]:
    """(major, minor) of a version string such as '2.51.0' or '3.0.0rc1'."""
    parts = []
    for part in version.split(".")[:2]:
        digits = "".join(c for c in part if c.isdigit()) or "0"
        parts.append(int(digits))
    return (parts + [0, 0])[0], (parts + [0, 0])[1]


def actor_pool_args(ray_version: str, actors: int) -> dict[str, Any]:
    """The `map_batches` arguments for a fixed pool of `actors` actors on this Ray version."""
    if version_tuple(ray_version) >= COMPUTE_STRATEGY_FROM:
        from ray.data import ActorPoolStrategy

        return {"compute": ActorPoolStrategy(size=actors)}
    return {"concurrency": actors}


def split_blocks(dataset: Any, rows_per_block: int) -> Any:
    """`dataset` cut into blocks of at most `rows_per_block` rows, streaming, where this Ray can.

    Ray hands each block to one actor task, and a single input file is one block: without a
    split, one actor would embed a whole file while the others wait. Older Ray has no
    streaming split; there the dataset is returned as it is (its files are its blocks)."""
    if "target_num_rows_per_block" not in inspect.signature(dataset.repartition).parameters:
        return dataset
    return dataset.repartition(target_num_rows_per_block=rows_per_block)
