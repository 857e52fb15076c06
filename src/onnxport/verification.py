"""Prove an artifact's model file right: parity with PyTorch over a shape matrix,
padding invariance, sentence-transformers parity, and quality metrics for int8/fp16.

fp32 files are judged by absolute tolerance against the PyTorch reference; quantized
and fp16 files by quality against the artifact's own fp32 model (cosine, neighbours,
label and entity agreement). The report lands in the manifest under the file's name.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .artifact import MODEL_FILE, Artifact
from .errors import InputError, OnnxportError
from .runtime import OnnxModel, TextEncoder
from .spec import SEQUENCE_AXIS, Task
from .texts import builtin_texts
from .torch_backend import TorchReference

DEFAULT_ATOL = 1e-4
ST_MIN_COSINE = 0.99999
QUALITY_DEFAULTS = {
    "mean_cosine": 0.995,
    "min_cosine": 0.98,
    "top10_overlap": 0.8,
    "label_agreement": 0.99,
    "entity_f1": 0.95,
}
QUALITY_KINDS = {"int8", "fp16", "opt-approx"}


@dataclasses.dataclass
class CheckResult:
    """One comparison: what was compared, the measured numbers and the worst input."""

    name: str
    output: str
    passed: bool
    measured: dict[str, float]
    limits: dict[str, float]
    worst_input: str | None = None
    shape: list[int] | None = None
    note: str | None = None

    def __post_init__(self) -> None:
        # numpy comparisons give numpy types; the manifest is JSON.
        self.passed = bool(self.passed)
        self.measured = {k: float(v) for k, v in self.measured.items()}
        self.limits = {k: float(v) for k, v in self.limits.items()}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class ParityReport:
    """Every check run on one model file, and whether all of them held."""

    model_file: str
    mode: str  # "atol" | "quality"
    reference: str
    checks: list[CheckResult]
    texts: int
    shapes: list[list[int]]
    skipped: list[str] = dataclasses.field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]

    def failure_summary(self) -> str:
        failed = self.failures()
        if not failed:
            return "no checks ran" if not self.checks else "all checks passed"
        first = failed[0]
        numbers = ", ".join(f"{k} {v:.3g}" for k, v in first.measured.items())
        return f"{len(failed)} of {len(self.checks)} checks failed, first: {first.name} on {first.output} ({numbers})"

    def to_dict(self) -> dict:
        return {
            "model_file": self.model_file,
            "passed": self.passed,
            "mode": self.mode,
            "reference": self.reference,
            "texts": self.texts,
            "shapes": self.shapes,
            "skipped": self.skipped,
            "checks": [c.to_dict() for c in self.checks],
        }


def verify(
    artifact: str | Path | Artifact,
    *,
    model_file: str = MODEL_FILE,
    reference: str | Path | None = None,
    texts: Sequence[str] | None = None,
    atol: float = DEFAULT_ATOL,
    thresholds: dict[str, float] | None = None,
    reference_wrapper: Any = None,
    record: bool = True,
) -> ParityReport:
    """Verify one model file of an artifact and (by default) record the report in its manifest."""
    art = artifact if isinstance(artifact, Artifact) else Artifact(artifact)
    texts = list(texts) if texts is not None else builtin_texts()
    if not texts:
        raise InputError("verification needs at least one text")
    encoder = TextEncoder.for_artifact(art)
    model = OnnxModel(art.model_path(model_file))
    kind = art.files.get(model_file, {}).get("kind", "fp32")
    if kind in QUALITY_KINDS:
        limits = {**QUALITY_DEFAULTS, **(thresholds or {})}
        report = _verify_quality(art, model, encoder, texts, model_file, limits)
    else:
        report = _verify_parity(art, model, encoder, texts, model_file, atol, reference, reference_wrapper)
    if record:
        art.record_verification(model_file, report.to_dict())
    return report


# ---------------------------------------------------------------- batches

def shape_matrix(texts: list[str], encoder: TextEncoder, static_shape: tuple[int, int] | None) -> list[list[str]]:
    """Batches of 1, 2, 7 and 16 texts: the shortest text alone, the longest alone (truncated),
    short pairs, and mixed short/long batches with heavy padding."""
    if static_shape:
        size = static_shape[0]
        return [_take(texts, i * size, size) for i in range(max(1, min(8, len(texts) // size)))]
    lengths = [len(e.ids) for e in encoder.tokenize(texts)]
    order = sorted(range(len(texts)), key=lambda i: lengths[i])
    shortest, longest = texts[order[0]], texts[order[-1]]
    short = [texts[i] for i in order[: max(2, len(order) // 3)]]
    mixed = [texts[order[i]] for i in _interleave(len(order))]
    return [
        [shortest],
        [longest],
        _take(short, 0, 2),
        _take(mixed, 0, 7),
        _take(mixed, 7, 16),
    ]


def _interleave(n: int) -> list[int]:
    """0, n-1, 1, n-2, ...: short and long texts side by side."""
    out, low, high = [], 0, n - 1
    while low <= high:
        out.append(low)
        if high != low:
            out.append(high)
        low, high = low + 1, high - 1
    return out


def _take(items: list[str], start: int, count: int) -> list[str]:
    return [items[(start + i) % len(items)] for i in range(count)]


# ---------------------------------------------------------------- fp32 parity

def _verify_parity(art: Artifact, model: OnnxModel, encoder: TextEncoder, texts: list[str], model_file: str,
                   atol: float, reference, reference_wrapper) -> ParityReport:
    static = art.spec.static_shape
    batches = shape_matrix(texts, encoder, static)
    outputs = {o.name: o for o in art.outputs}
    checks: list[CheckResult] = []
    skipped: list[str] = []
    reference_name = "none"
    run_reference = None
    try:
        torch_reference = TorchReference(art, reference=reference, wrapper=reference_wrapper)
        run_reference, reference_name = torch_reference.run, torch_reference.name
    except OnnxportError as error:  # no torch, or the source is gone: say so, don't crash
        skipped.append(f"PyTorch parity: {error}")
    shapes = []
    onnx_results = []
    for batch in batches:
        arrays = encoder.encode(batch)
        shapes.append(list(arrays["input_ids"].shape))
        try:
            got = model.run(arrays)
        except Exception as error:  # e.g. a graph whose batch or sequence axis was fixed at export
            checks.append(CheckResult(f"runs at shape {'x'.join(map(str, shapes[-1]))}", "*", False,
                                      {"max_abs_diff": float("inf")}, {"max_abs_diff": atol}, _short(batch[0]),
                                      shapes[-1], note=_first_line(error)))
            continue
        onnx_results.append((batch, arrays, got))
        if run_reference is None:
            continue
        expected = run_reference(arrays)
        for name, info in outputs.items():
            checks.append(_compare(f"pytorch parity b{len(batch)}", name, got[name], expected[name],
                                   arrays["attention_mask"], SEQUENCE_AXIS in info.dims[1:2], batch, atol))
    if not static:
        checks.extend(_padding_invariance(model, encoder, onnx_results, outputs, atol))
    st_check = _sentence_transformers_check(art, model, encoder, texts, atol, skipped)
    if st_check is not None:
        checks.append(st_check)
    return ParityReport(model_file, "atol", reference_name, checks, len(texts), shapes, skipped)


def _compare(name: str, output: str, got: np.ndarray, expected: np.ndarray, mask: np.ndarray, per_token: bool,
             batch: list[str], atol: float) -> CheckResult:
    limits = {"max_abs_diff": atol}
    if got.shape != expected.shape:
        return CheckResult(name, output, False, {"max_abs_diff": float("inf")}, limits, None, list(got.shape),
                           note=f"shape {list(got.shape)} != PyTorch {list(expected.shape)}")
    if got.dtype != expected.dtype:
        return CheckResult(name, output, False, {"max_abs_diff": float("inf")}, limits, None, list(got.shape),
                           note=f"dtype {got.dtype} != PyTorch {expected.dtype}")
    diff = np.abs(got.astype(np.float64) - expected.astype(np.float64))
    if per_token:
        real = mask.astype(bool)
        per_row = np.array([diff[i][real[i]].max() if real[i].any() else 0.0 for i in range(len(batch))])
        mean = float(diff[real].mean()) if real.any() else 0.0
        cosines = _row_cosines(got[real], expected[real])
    else:
        per_row = diff.reshape(len(batch), -1).max(axis=1)
        mean = float(diff.mean())
        cosines = _row_cosines(got.reshape(len(batch), -1), expected.reshape(len(batch), -1))
    worst = int(per_row.argmax())
    measured = {"max_abs_diff": float(per_row.max()), "mean_abs_diff": mean,
                "min_cosine": float(cosines.min()) if cosines.size else 1.0}
    return CheckResult(name, output, measured["max_abs_diff"] <= atol, measured, limits,
                       _short(batch[worst]), list(got.shape))


def _row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return np.where(norms > 0, (a * b).sum(-1) / np.maximum(norms, 1e-30), 1.0)


def _padding_invariance(model: OnnxModel, encoder: TextEncoder, results, outputs, atol: float) -> list[CheckResult]:
    """Each text of the padded batches, run alone, must give the same output."""
    checks = []
    for batch, arrays, got in results:
        if len(batch) < 2:
            continue
        worst = {name: (0.0, None) for name in outputs}
        for row, text in enumerate(batch):
            single = encoder.encode([text])
            try:
                alone = model.run(single)
            except Exception as error:  # a graph with a fixed batch or sequence axis
                shape = "x".join(map(str, single["input_ids"].shape))
                checks.append(CheckResult(f"runs at shape {shape}", "*", False, {"max_abs_diff": float("inf")},
                                          {"max_abs_diff": atol}, _short(text), note=_first_line(error)))
                worst = {}
                break
            length = int(arrays["attention_mask"][row].sum())
            for name, info in outputs.items():
                if SEQUENCE_AXIS in info.dims[1:2]:
                    diff = np.abs(got[name][row, :length] - alone[name][0, :length]).max()
                else:
                    diff = np.abs(got[name][row] - alone[name][0]).max()
                if diff >= worst[name][0]:
                    worst[name] = (float(diff), text)
        for name, (diff, text) in worst.items():
            checks.append(CheckResult(f"padding invariance b{len(batch)}", name, diff <= atol,
                                      {"max_abs_diff": diff}, {"max_abs_diff": atol}, _short(text)))
    return checks


def _sentence_transformers_check(art: Artifact, model: OnnxModel, encoder: TextEncoder, texts: list[str],
                                 atol: float, skipped: list[str]) -> CheckResult | None:
    source = art.manifest.get("source", {})
    if art.task is not Task.SENTENCE_EMBEDDING or source.get("kind") != "st-folder":
        return None
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        skipped.append("sentence-transformers parity: sentence-transformers is not installed")
        return None
    path = source.get("path")
    if not path or not Path(path).exists():
        skipped.append(f"sentence-transformers parity: source folder {path} is gone")
        return None
    st_model = SentenceTransformer(path, device="cpu")
    expected = st_model.encode(texts, batch_size=16, convert_to_numpy=True, show_progress_bar=False)
    got = np.concatenate([model.run(encoder.encode(texts[i:i + 16]))["sentence_embedding"]
                          for i in range(0, len(texts), 16)])
    cosines = _row_cosines(got, expected)
    diff = np.abs(got - expected).max(axis=1)
    worst = int(cosines.argmin())
    measured = {"min_cosine": float(cosines.min()), "max_abs_diff": float(diff.max())}
    limits = {"min_cosine": ST_MIN_COSINE, "max_abs_diff": atol}
    passed = measured["min_cosine"] >= ST_MIN_COSINE and measured["max_abs_diff"] <= atol
    return CheckResult("sentence-transformers encode", "sentence_embedding", passed, measured, limits,
                       _short(texts[worst]), list(got.shape))


# ---------------------------------------------------------------- quality (int8 / fp16)

def _verify_quality(art: Artifact, model: OnnxModel, encoder: TextEncoder, texts: list[str], model_file: str,
                    limits: dict[str, float]) -> ParityReport:
    reference = OnnxModel(art.model_path(MODEL_FILE))
    got, expected, masks = [], [], []
    shapes = []
    for start in range(0, len(texts), 16):
        arrays = encoder.encode(texts[start:start + 16])
        shapes.append(list(arrays["input_ids"].shape))
        got.append(model.run(arrays))
        expected.append(reference.run(arrays))
        masks.append(arrays["attention_mask"].astype(bool))
    checks = quality_checks(art.task, art.outputs[0].name, got, expected, masks, texts, limits, art.labels)
    return ParityReport(model_file, "quality", f"fp32 {MODEL_FILE}", checks, len(texts), shapes)


def quality_checks(task: Task, output: str, got: list[dict], expected: list[dict], masks: list[np.ndarray],
                   texts: list[str], limits: dict[str, float], labels: dict[int, str] | None) -> list[CheckResult]:
    """Quality of a reduced-precision model against the fp32 one, by task."""
    if task in (Task.SEQUENCE_CLASSIFICATION,):
        a = np.concatenate([g[output] for g in got]).argmax(-1)
        b = np.concatenate([e[output] for e in expected]).argmax(-1)
        agreement = float((a == b).mean())
        worst = texts[int(np.argmax(a != b))] if agreement < 1 else None
        return [CheckResult("label agreement", output, agreement >= limits["label_agreement"],
                            {"label_agreement": agreement}, {"label_agreement": limits["label_agreement"]},
                            _short(worst) if worst else None)]
    if task is Task.TOKEN_CLASSIFICATION:
        a_tags = [g[output].argmax(-1) for g in got]
        b_tags = [e[output].argmax(-1) for e in expected]
        agree = np.concatenate([(x == y)[m] for x, y, m in zip(a_tags, b_tags, masks)])
        spans_a = _bio_spans(a_tags, masks, labels)
        spans_b = _bio_spans(b_tags, masks, labels)
        f1 = _f1(spans_a, spans_b)
        token_agreement = float(agree.mean())
        return [
            CheckResult("token label agreement", output, token_agreement >= limits["label_agreement"],
                        {"label_agreement": token_agreement}, {"label_agreement": limits["label_agreement"]}),
            CheckResult("entity agreement", output, f1 >= limits["entity_f1"], {"entity_f1": f1},
                        {"entity_f1": limits["entity_f1"]}),
        ]
    # Embeddings: one vector per text (pooled output, or the masked mean of token vectors).
    a = _vectors(got, output, masks)
    b = _vectors(expected, output, masks)
    cosines = _row_cosines(a, b)
    overlap = top_k_overlap(a, b, k=10)
    worst = int(cosines.argmin())
    checks = [
        CheckResult("cosine to fp32", output,
                    cosines.mean() >= limits["mean_cosine"] and cosines.min() >= limits["min_cosine"],
                    {"mean_cosine": float(cosines.mean()), "min_cosine": float(cosines.min())},
                    {"mean_cosine": limits["mean_cosine"], "min_cosine": limits["min_cosine"]},
                    _short(texts[worst])),
    ]
    if len(texts) > 10:
        checks.append(CheckResult("top-10 neighbour overlap", output, overlap >= limits["top10_overlap"],
                                  {"top10_overlap": overlap}, {"top10_overlap": limits["top10_overlap"]}))
    return checks


def _vectors(results: list[dict], output: str, masks: list[np.ndarray]) -> np.ndarray:
    rows = []
    for result, mask in zip(results, masks):
        values = result[output]
        if values.ndim == 3:
            weights = mask[..., None].astype(values.dtype)
            values = (values * weights).sum(1) / np.maximum(weights.sum(1), 1e-9)
        rows.append(values.reshape(values.shape[0], -1))
    return np.concatenate(rows).astype(np.float64)


def top_k_overlap(a: np.ndarray, b: np.ndarray, k: int = 10) -> float:
    """Mean share of each text's k nearest neighbours (by cosine) that both models agree on."""
    k = min(k, len(a) - 1)
    if k < 1:
        return 1.0

    def neighbours(x: np.ndarray) -> np.ndarray:
        unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        similarity = unit @ unit.T
        np.fill_diagonal(similarity, -np.inf)
        return np.argsort(-similarity, axis=1)[:, :k]

    na, nb = neighbours(a), neighbours(b)
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(na, nb)]))


def _bio_spans(tag_batches, masks, labels: dict[int, str] | None) -> set[tuple]:
    """(text, start, end, type) spans from B-/I- token tags; 'O' and unknown tags end a span."""
    spans = set()
    offset = 0
    for tags, mask in zip(tag_batches, masks):
        for row in range(tags.shape[0]):
            current = None
            for position in range(tags.shape[1] + 1):
                label = (labels or {}).get(int(tags[row, position]), str(int(tags[row, position]))) \
                    if position < tags.shape[1] and mask[row, position] else "O"
                prefix, _, kind = label.partition("-") if "-" in label else ("B" if label != "O" else "O", "", label)
                if current and (prefix != "I" or kind != current[3]):
                    spans.add(tuple(current))
                    current = None
                if prefix in ("B", "I") and current is None:
                    current = [offset + row, position, position + 1, kind]
                elif current is not None:
                    current[2] = position + 1
        offset += tags.shape[0]
    return spans


def _f1(a: set, b: set) -> float:
    if not a and not b:
        return 1.0
    both = len(a & b)
    return 2 * both / (len(a) + len(b))


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


def _short(text: str | None, limit: int = 60) -> str | None:
    if text is None:
        return None
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
