"""Where inference time goes, in PyTorch terms: onnxruntime's profiler summed up the module tree.

Runs one of the artifact's model files on real batches with `SessionOptions.enable_profiling`,
reads the JSON trace, and adds each node's kernel time to the module its hierarchy tag names.
An onnxruntime session rewrites the graph once more when it loads it (MatMul + scale ->
FusedMatMul, Gemm + activation -> FusedGemm, ...), so the kernels that run are not all nodes
of the file: the session's optimized graph is saved beside the trace and retagged from the
file (`hierarchy.retag`), which gives every fused kernel its module too. Unnamed nodes are
reported by onnxruntime as `<op>_<index>`, which is how `hierarchy.node_keys` keys them.

Kernel times of a run add up to a little less than the run's wall time (the executor's own
work between kernels, input copies); the report gives both so the gap is visible. Runtime
side: no torch.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import re
import tempfile
import time
import warnings
from pathlib import Path
from typing import Sequence

from ..core.artifact import MODIFIED, Artifact
from ..core.messages import first_line
from ..core.sample_texts import builtin_texts
from ..errors import ArtifactError, InputError
from ..graph.onnx_files import check_fits_artifact, load_onnx
from ..graph.tags import Tag, is_tagged, node_keys, read_tag, retag
from ..runtime.pipelines import choose_model_file
from ..runtime.session import default_threads, graph_feed
from ..runtime.tokenization import TextEncoder

GLUE = "(glue)"
UNKNOWN = "(not in graph)"
_INDEX = re.compile(r"(?<=\.)\d+(?=\.|$)")


@dataclasses.dataclass
class NodeTime:
    op: str
    ms: float
    calls: int
    tag: Tag | None
    found: bool  # False: the trace names a node neither the file nor the session graph has


@dataclasses.dataclass
class Profile:
    """Kernel time per node over the measured runs, and the wall time of those runs."""

    model_file: str
    texts: int
    batch_size: int
    runs: int
    threads: int
    wall_ms: float
    session_ms: float
    nodes: dict[str, NodeTime]

    @property
    def kernel_ms(self) -> float:
        return sum(n.ms for n in self.nodes.values())

    def rows(self, depth: int = 3, merge_layers: bool = False) -> list[dict]:
        """Kernel time per module at `depth` (shallower leaves stay as they are), largest first.

        The rows partition the kernel time, so their shares add up to 1. With `merge_layers`
        repeated blocks are added up: `encoder.layer.*.attention`."""
        total = self.kernel_ms or 1.0
        groups: dict[str, dict] = {}
        for node in self.nodes.values():
            if node.tag is None:
                module, cls = (GLUE if node.found else UNKNOWN), ""
            else:
                level = node.tag.level(depth)
                module, cls = level.module, level.classes[-1]
                if merge_layers:
                    module = _INDEX.sub("*", module)
            row = groups.setdefault(module, {"module": module, "class": cls, "ms": 0.0, "nodes": 0,
                                             "ops": collections.Counter()})
            row["ms"] += node.ms
            row["nodes"] += 1
            row["ops"][node.op] += node.ms
        rows = sorted(groups.values(), key=lambda r: -r["ms"])
        for row in rows:
            row["share"] = row["ms"] / total
            row["ops"] = {op: round(ms, 3) for op, ms in row["ops"].most_common()}
            row["ms"] = round(row["ms"], 3)
        return rows

    def to_dict(self, depth: int = 3, merge_layers: bool = False) -> dict:
        return {
            "model_file": self.model_file, "texts": self.texts, "batch_size": self.batch_size,
            "runs": self.runs, "threads": self.threads, "depth": depth, "merge_layers": merge_layers,
            "wall_ms": round(self.wall_ms, 3), "session_ms": round(self.session_ms, 3),
            "kernel_ms": round(self.kernel_ms, 3),
            "kernel_share_of_wall": round(self.kernel_ms / self.wall_ms, 4) if self.wall_ms else None,
            "rows": self.rows(depth, merge_layers),
            "nodes": {name: {"op": n.op, "ms": round(n.ms, 3), "calls": n.calls,
                             "module": None if n.tag is None else n.tag.module, "found": n.found}
                      for name, n in self.nodes.items()},
        }


def profile(artifact: str | Path | Artifact, *, model: str = "auto", texts: Sequence[str] | None = None,
            batch_size: int = 16, repeat: int = 1, warmup: int = 1, threads: int | None = None) -> Profile:
    """Profile the artifact's `model` file (auto, fp32, opt, int8) on `texts` (default: 64
    built-in texts of mixed length) in batches; `warmup` runs are left out of every figure."""
    import onnxruntime as ort

    if batch_size < 1 or repeat < 1 or warmup < 0:
        raise InputError("batch size and repeat must be at least 1, warmup at least 0")
    art = artifact if isinstance(artifact, Artifact) else Artifact(artifact)
    name = choose_model_file(art, model)
    path = art.model_path(name)
    source = load_onnx(path)
    check_fits_artifact(art, name, source)  # a swapped file is refused, not profiled
    if art.verdict(name) == MODIFIED:
        warnings.warn(f"{name} was modified since it was verified; profiling it as it is now", stacklevel=2)
    if not is_tagged(source):
        raise InputError(f"{name} has no module tags, so time cannot be put on modules; re-export without "
                         "--no-hierarchy (and optimize/quantize again)")
    texts = list(texts) if texts is not None else builtin_texts(64)
    if not texts:
        raise InputError("no texts to profile with; give a file with one text per line")
    encoder = TextEncoder.for_artifact(art)
    batches = [encoder.encode(texts[i:i + batch_size]) for i in range(0, len(texts), batch_size)]
    threads = threads or default_threads()

    with tempfile.TemporaryDirectory(prefix="onnxport-profile-") as scratch:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(scratch) / "trace")
        options.optimized_model_filepath = str(Path(scratch) / "session.onnx")
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own untyped errors
            raise ArtifactError(f"onnxruntime cannot load {path}: {first_line(error)}") from None
        feeds = [graph_feed(session, batch) for batch in batches]
        for _ in range(warmup):
            session.run(None, feeds[0])
        wall = 0.0
        for _ in range(repeat):
            for feed in feeds:
                started = time.perf_counter()
                session.run(None, feed)
                wall += time.perf_counter() - started
        events = json.loads(Path(session.end_profiling()).read_text())
        session_graph = _load_if_present(Path(scratch) / "session.onnx")

    tags: dict[str, Tag | None] = {key: read_tag(n) for key, n in zip(node_keys(source), source.graph.node)}
    if session_graph is not None:
        retag(source, session_graph)
        tags.update({n.name: read_tag(n) for n in session_graph.graph.node if n.name})
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])
    measured = runs[warmup:]
    start = runs[warmup - 1]["ts"] + runs[warmup - 1]["dur"] if warmup and len(runs) >= warmup else 0
    nodes: dict[str, NodeTime] = {}
    for event in events:
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time") or event["ts"] < start:
            continue
        node = event["name"][: -len("_kernel_time")]
        entry = nodes.get(node)
        if entry is None:
            op = event.get("args", {}).get("op_name", "?")
            entry = nodes[node] = NodeTime(op=op, ms=0.0, calls=0, tag=tags.get(node), found=node in tags)
        entry.ms += event["dur"] / 1000.0
        entry.calls += 1
    return Profile(model_file=name, texts=len(texts), batch_size=batch_size, runs=repeat * len(feeds),
                   threads=threads, wall_ms=wall * 1000.0, session_ms=sum(e["dur"] for e in measured) / 1000.0,
                   nodes=nodes)


def _load_if_present(path: Path):
    import onnx

    if not path.exists():
        return None
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception:  # the session graph is a bonus: without it kernels map by name only
        return None
