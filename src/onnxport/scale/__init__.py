"""Scale-out on Ray Data (install `onnxport[ray]`): embed, ner or classify a corpus with a
pool of actors that each load the artifact once.

    map_dataset(dataset, ARTIFACT, task_fn="embed")   a ray.data.Dataset with results added
    run("docs/*.parquet", "out.parquet", ARTIFACT)     files in, files out, plus a summary

Same artifact, same pipelines, same results as `onnxport.load(...)`: this layer only
distributes rows (docs/scale.md). It runs artifacts; it never imports the exporter or torch.
"""

from __future__ import annotations

from .columns import DEFAULT_COLUMNS, ERROR_COLUMN
from .compat import import_ray
from .jobs import ScaleSummary, run
from .mapping import ROWS_PER_BATCH, TASK_FNS, map_dataset
from .worker import ArtifactWorker

__all__ = ["ArtifactWorker", "DEFAULT_COLUMNS", "ERROR_COLUMN", "ROWS_PER_BATCH", "ScaleSummary", "TASK_FNS",
           "import_ray", "map_dataset", "run"]
