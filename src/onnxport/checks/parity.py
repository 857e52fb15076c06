"""Prove a model file right: run it over a shape matrix and compare it with a reference.

fp32 files (and the exactly fused model.opt.onnx) are judged by absolute tolerance
against the reference the caller passes (convert passes PyTorch) or, without one, the
artifact's fp32 model.onnx when PyTorch verified that; quantized, fp16 and approximate
files by quality against model.onnx (see `quality`). Padding invariance and running at
each shape are checked too. No reference, or an unverified one, gives "not verified",
never a pass. Sequence classifiers, rerankers and question answerers whose tokenizer joins
two texts are also run on sentence pairs, some cut longest_first, so the pair template and
its truncation are compared too.
This module never imports torch: references come in as arguments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from ..core.arguments import limits as limits_arg
from ..core.artifact import FAILED, PASSED, Artifact, engine_key
from ..core.cpus import cpu_name, detect_isa
from ..core.messages import first_line, short
from ..core.model_files import MODEL_FILE, QUALITY_KINDS
from ..core.sample_texts import builtin_texts
from ..core.spec import SEQUENCE_AXIS, Task
from ..errors import ArtifactError, InputError
from ..runtime.model_choice import auto_choice
from ..runtime.openvino_model import OpenVinoModel, check_engine, openvino_version
from ..runtime.session import OnnxModel
from ..runtime.tokenization import TextEncoder
from .quality import (QUALITY_DEFAULTS, finite_rows, judged_batches, judged_inputs, length_order, quality_checks,
                      row_cosines)
from .report import NOT_VERIFIED, CheckResult, ParityReport
from .speed import relative_speed
from .text_checks import checked_texts, unknown_token_problem

DEFAULT_ATOL = 1e-4
# Tasks whose inputs are often two texts: their files are also checked on pairs.
PAIR_TASKS = (Task.SEQUENCE_CLASSIFICATION, Task.TEXT_RANKING, Task.QUESTION_ANSWERING)
EMBEDDING_MIN_COSINE = 0.99999


class Reference(Protocol):
    """A model the file must match: the graph's input arrays in, {output name: array} out."""

    name: str

    def run(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


class EmbeddingReference(Protocol):
    """An independent sentence encoder (sentence-transformers' SentenceTransformer, or its
    SparseEncoder in dense form) for sentence-embedding and sparse-embedding files."""

    name: str

    def encode(self, texts: list[str]) -> np.ndarray: ...


class OnnxReference:
    """The artifact's fp32 model.onnx as the reference for its other files.

    Trusted only when model.onnx itself passed a verification with a reference (PyTorch at
    export time); `unverified_reason` says why not otherwise."""

    def __init__(self, art: Artifact) -> None:
        self.model = OnnxModel(art.model_path(MODEL_FILE))
        report = art.files.get(MODEL_FILE, {}).get("verification") or {}
        verdict = art.verdict(MODEL_FILE)
        if verdict == "passed":
            self.name = f"fp32 {MODEL_FILE} (verified against {report.get('reference', 'pytorch')})"
            self.unverified_reason = None
        else:
            self.name = f"fp32 {MODEL_FILE} ({verdict})"
            state = "is not verified itself" if verdict == NOT_VERIFIED else "failed its own verification"
            self.unverified_reason = (f"the reference {MODEL_FILE} {state}; verify it against PyTorch first "
                                      f"(`onnxport verify {art.path}` with onnxport[export] installed)")

    def run(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.model.run(arrays)


def verify(
    artifact: str | Path | Artifact,
    *,
    model_file: str = MODEL_FILE,
    reference: Reference | None = None,
    embedding_reference: EmbeddingReference | None = None,
    texts: Sequence[str] | None = None,
    atol: float = DEFAULT_ATOL,
    thresholds: dict[str, float] | None = None,
    notes: Sequence[str] = (),
    record: bool | None = None,
    own_reference: bool = False,
    progress: Callable[[str], None] | None = None,
    engine: str = "onnxruntime",
    precision: str | None = None,
) -> ParityReport:
    """Verify one model file of an artifact and record the report in its manifest.

    `reference` is what an fp32/opt file must match within `atol`; without one, files other
    than model.onnx are compared with model.onnx. Quality kinds (int8, fp16, opt-approx)
    are always compared with model.onnx, against `thresholds`. `notes` are reasons a
    reference was not available, kept in the report's `skipped`.

    Recording (see `record_report`): `record=None` makes the report the file's verdict when
    the run used the default texts, tolerance, thresholds and reference, and keeps it beside
    the verdict otherwise (`own_reference`: the caller chose the reference); True always
    makes it the verdict, False writes nothing. A report that is "not verified" never
    replaces a recorded verdict that had a reference. `report.recorded` says what happened.
    `progress` gets a line per step (each batch of the shape matrix, then each check phase).

    `engine="openvino"` judges model.onnx run by OpenVINO (`precision` f32: like model.onnx,
    against `reference` or else onnxruntime on model.onnx; bf16: by quality against
    model.onnx, like int8) and records the verdict for that engine and precision alone.
    """
    art = artifact if isinstance(artifact, Artifact) else Artifact(artifact)
    if not isinstance(atol, (int, float)) or not atol >= 0:
        raise InputError(f"atol must be a number of at least 0, not {atol!r}")
    thresholds = limits_arg(thresholds, "thresholds", QUALITY_DEFAULTS) or None
    default_run = texts is None and atol == DEFAULT_ATOL and not thresholds and not own_reference
    texts = builtin_texts() if texts is None else checked_texts(texts)
    encoder = TextEncoder.for_artifact(art)
    model = engine_model(art, model_file, engine, precision)
    art.check_graph_io(model_file, list(model.input_types), model.output_names)
    # reduced precision (int8, fp16, approximate GELU, OpenVINO bf16) is judged by quality
    by_quality = (art.files.get(model_file, {}).get("kind", "fp32") in QUALITY_KINDS
                  or getattr(model, "precision", None) == "bf16")
    if engine == "openvino" and not by_quality and reference is None:
        reference = OnnxReference(art)  # the same file on onnxruntime
    if by_quality:
        limits = {**QUALITY_DEFAULTS, **(thresholds or {})}
        report = _verify_quality(art, model, encoder, texts, model_file, limits, progress)
    else:
        if reference is None and model_file != MODEL_FILE:
            reference = OnnxReference(art)
        report = _verify_parity(art, model, encoder, texts, model_file, atol, reference, embedding_reference,
                                progress)
    problem = unknown_token_problem(encoder, texts, art.path)  # a pass on [UNK]s would mean nothing
    if problem:
        report.unverified_reason = "; ".join(filter(None, [problem, report.unverified_reason]))
    report.skipped[:0] = list(notes)
    if engine == "openvino":
        report.engine = model.describe()
        facts = engine_facts(model)
        if report.passed and record is not False:  # what `model="auto"` weighs it by (runtime.model_choice)
            say = progress or (lambda message: None)
            facts["speed"] = engine_speed(art, model, encoder, texts, say)
        report.recorded = record_engine_report(art, engine_key(engine, model.precision), report, record=record,
                                               default_run=default_run, facts=facts)
    else:
        report.recorded = record_report(art, model_file, report, record=record, default_run=default_run)
    return report


def engine_model(art: Artifact, model_file: str, engine: str, precision: str | None):
    """The runner verify judges: onnxruntime on `model_file`, or OpenVINO on model.onnx."""
    check_engine(engine, precision)
    if engine == "onnxruntime":
        return OnnxModel(art.model_path(model_file))
    if model_file != MODEL_FILE:
        raise InputError(f"OpenVINO runs {MODEL_FILE} only: {model_file} holds onnxruntime's own operators")
    return OpenVinoModel(art.model_path(MODEL_FILE), precision=precision or "f32")


def engine_facts(model) -> dict:
    """What an engine verdict was measured with: the engine, precision, version and CPU."""
    return {"engine": "openvino", "precision": model.precision, "version": openvino_version(),
            "measured_on": {"cpu": cpu_name(), "isa": detect_isa()}}


def engine_speed(art: Artifact, model, encoder: TextEncoder, texts: list[str], say) -> dict:
    """How fast `model` (another engine) runs here against the file onnxruntime would run
    (`auto_choice` without engines), measured now on every other text."""
    try:
        against = auto_choice(art, engines=False).file
    except ArtifactError as error:  # nothing verified to compare with
        return {"against": None, "reason": first_line(error)}
    say(f"measuring {model.describe()} against onnxruntime on {against}")
    speedup, seconds = relative_speed(OnnxModel(art.model_path(against)), model, encoder, texts)
    return {"against": against, "speedup": speedup, "timed_seconds": seconds}


def record_engine_report(art: Artifact, key: str, report: ParityReport, *, record: bool | None,
                         default_run: bool, facts: dict) -> str:
    """As `record_report`, for model.onnx on another engine: a default run (or record=True)
    becomes that engine's verdict, unless it has no reference and replaces one that had."""
    if record is False or (record is None and not default_run):
        return "not recorded"
    if report.verdict == NOT_VERIFIED and art.engine_verdict(key) in (PASSED, FAILED):
        return "not recorded"
    return "verdict" if art.record_engine_verification(key, report.to_dict(), facts) else "read-only"


def record_report(art: Artifact, model_file: str, report: ParityReport, *, record: bool | None,
                  default_run: bool) -> str:
    """Write `report` into the manifest as the verdict ("verdict"), beside it ("beside"), or
    not at all ("not recorded", "read-only"). A recorded verdict with a reference is only
    replaced by another verdict with a reference, unless the file changed since (MODIFIED)."""
    if record is False:
        return "not recorded"
    current = art.verdict(model_file)
    keep = current in (PASSED, FAILED)  # a verdict with a reference, about these very bytes
    as_verdict = not (report.verdict == NOT_VERIFIED and keep) and (record or default_run or not keep)
    if as_verdict:
        written = art.record_verification(model_file, report.to_dict())
    else:
        written = art.record_extra_verification(model_file, report.to_dict())
    if not written:
        return "read-only"
    return "verdict" if as_verdict else "beside"


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


def pair_matrix(texts: list[str], encoder: TextEncoder,
                static_shape: tuple[int, int] | None) -> list[tuple[str, list[tuple[str, str]]]]:
    """(kind, batch of pairs): short pairs, a mixed batch with heavy padding, and pairs longer
    than the model takes together (the first, the second, or both texts long), which the
    tokenizer cuts longest_first."""
    usable = [text for text in texts if text.strip()]  # a pair with a blank half is refused
    if not usable:
        return []
    lengths = [len(e.ids) for e in encoder.tokenize(usable, add_special_tokens=False)]
    order = sorted(range(len(usable)), key=lambda i: lengths[i])
    mixed = [usable[order[i]] for i in _interleave(len(order))]
    # short with short, long with long, alternating: a batch of them is heavily padded
    pairs = [(mixed[i], mixed[(i + 2) % len(mixed)]) for i in range(len(mixed))]
    shortest = usable[order[0]]
    long_first, long_second = _long_text(usable, lengths, encoder.max_length), _long_text(
        usable[::-1], lengths[::-1], encoder.max_length // 2 + 1)
    truncated = [(long_first, shortest), (shortest, long_first), (long_first, long_second)] if long_first else []
    if static_shape:
        size = static_shape[0]
        batches = [("pairs", _take(pairs, 0, size))]
        return batches + ([("truncated pairs", _take(truncated, 0, size))] if truncated else [])
    batches = [("pairs", [(shortest, shortest)]), ("pairs", _take(pairs, 0, 7))]
    return batches + ([("truncated pairs", truncated)] if truncated else [])


def _long_text(texts: list[str], lengths: list[int], over: int) -> str | None:
    """`texts` joined until they hold more than `over` tokens; None if they never do."""
    if not any(lengths):
        return None
    parts, count, index = [], 0, 0
    while count <= over:
        parts.append(texts[index % len(texts)])
        count += lengths[index % len(texts)]
        index += 1
    return " ".join(parts)


def _interleave(n: int) -> list[int]:
    """0, n-1, 1, n-2, ...: short and long texts side by side."""
    out, low, high = [], 0, n - 1
    while low <= high:
        out.append(low)
        if high != low:
            out.append(high)
        low, high = low + 1, high - 1
    return out


def _take(items: list, start: int, count: int) -> list:
    return [items[(start + i) % len(items)] for i in range(count)]


# ---------------------------------------------------------------- fp32 parity

def _verify_parity(art: Artifact, model: OnnxModel, encoder: TextEncoder, texts: list[str], model_file: str,
                   atol: float, reference: Reference | None,
                   embedding_reference: EmbeddingReference | None, progress=None) -> ParityReport:
    say = progress or (lambda message: None)
    static = art.spec.static_shape
    batches: list[tuple[str, list]] = [("", batch) for batch in shape_matrix(texts, encoder, static)]
    if art.task in PAIR_TASKS and encoder.takes_pairs:
        batches += pair_matrix(texts, encoder, static)
    outputs = {o.name: o for o in art.outputs}
    checks: list[CheckResult] = []
    shapes = []
    onnx_results = []
    for number, (kind, batch) in enumerate(batches, 1):
        arrays = encoder.encode_items(batch)
        shapes.append(list(arrays["input_ids"].shape))
        say(f"verifying {model_file}: batch {number}/{len(batches)} (b{shapes[-1][0]} x {shapes[-1][1]} tokens"
            f"{', ' + kind if kind else ''})")
        try:
            got = model.run(arrays)
        except Exception as error:  # e.g. a graph whose batch or sequence axis was fixed at export
            checks.append(CheckResult(f"runs at shape {'x'.join(map(str, shapes[-1]))}", "*", False,
                                      {"max_abs_diff": float("inf")}, {"max_abs_diff": atol}, _shown(batch[0]),
                                      shapes[-1], note=first_line(error, 200)))
            continue
        onnx_results.append((kind, batch, arrays, got))
        if reference is None:
            continue
        expected = reference.run(arrays)
        for name, info in outputs.items():
            checks.append(_compare(f"{_label(reference)} parity{_kind_label(kind)} b{len(batch)}", name, got.get(name),
                                   expected.get(name), arrays["attention_mask"], SEQUENCE_AXIS in info.dims[1:2],
                                   batch, atol))
    if not static:
        say(f"verifying {model_file}: padding invariance (each padded text alone)")
        checks.extend(_padding_invariance(model, encoder, onnx_results, outputs, atol))
    if embedding_reference is not None:
        say(f"verifying {model_file}: against {embedding_reference.name} on {len(texts)} texts")
        checks.append(_embedding_check(model, encoder, texts, atol, embedding_reference, art.default_prompt,
                                       art.outputs[0].name))
    if reference is None:
        reason = (f"no reference to compare {model_file} with: PyTorch is not available here "
                  "(pip install \"onnxport[export]\" and keep the source model folder)")
    else:
        reason = getattr(reference, "unverified_reason", None)
    return ParityReport(model_file, "atol", reference.name if reference is not None else "none", checks,
                        len(texts), shapes, unverified_reason=reason)


def _shown(item: str | tuple[str, str]) -> str | None:
    """A text, or a pair as 'first | second', cut for a report."""
    return short(item if isinstance(item, str) else " | ".join(item))


def _kind_label(kind: str) -> str:
    """' (pairs)' in check names of pair batches; nothing for single texts (names as before)."""
    return f" ({kind})" if kind else ""


def _label(reference: Reference) -> str:
    """'pytorch' or 'fp32 model.onnx': the check names say what was compared."""
    return reference.name.split(" (")[0]


def _compare(name: str, output: str, got: np.ndarray | None, expected: np.ndarray | None, mask: np.ndarray, per_token: bool,
             batch: list, atol: float) -> CheckResult:
    limits = {"max_abs_diff": atol}
    if got is None or expected is None:
        where = "the file" if got is None else "the reference"
        return CheckResult(name, output, False, {"max_abs_diff": float("inf")}, limits, None, None,
                           note=f"{where} has no output '{output}'")
    if got.shape != expected.shape:
        return CheckResult(name, output, False, {"max_abs_diff": float("inf")}, limits, None, list(got.shape),
                           note=f"shape {list(got.shape)} != PyTorch {list(expected.shape)}")
    if got.dtype != expected.dtype:
        return CheckResult(name, output, False, {"max_abs_diff": float("inf")}, limits, None, list(got.shape),
                           note=f"dtype {got.dtype} != PyTorch {expected.dtype}")
    with np.errstate(invalid="ignore"):  # inf - inf is NaN, and NaN fails below
        diff = np.abs(got.astype(np.float64) - expected.astype(np.float64))
    if per_token:
        real = mask.astype(bool)
        per_row = np.array([diff[i][real[i]].max() if real[i].any() else 0.0 for i in range(len(batch))])
        mean = float(diff[real].mean()) if real.any() else 0.0
        cosines = row_cosines(got[real], expected[real])
    else:
        per_row = diff.reshape(len(batch), -1).max(axis=1)
        mean = float(diff.mean())
        cosines = row_cosines(got.reshape(len(batch), -1), expected.reshape(len(batch), -1))
    worst = int(per_row.argmax())
    measured = {"max_abs_diff": float(per_row.max()), "mean_abs_diff": mean,
                "min_cosine": float(cosines.min()) if cosines.size else 1.0}
    # NaN never compares as within tolerance; say where it came from.
    real = mask.astype(bool) if per_token else None
    broken = [who for who, values in (("the file", got), ("the reference", expected))
              if not finite_rows(values, real).all()]
    return CheckResult(name, output, measured["max_abs_diff"] <= atol and not broken, measured, limits,
                       _shown(batch[worst]), list(got.shape),
                       note=f"{' and '.join(broken)} output NaN or inf" if broken else None)


def _padding_invariance(model: OnnxModel, encoder: TextEncoder, results, outputs, atol: float) -> list[CheckResult]:
    """Each text (or pair) of the padded batches, run alone, must give the same output."""
    checks = []
    for kind, batch, arrays, got in results:
        if len(batch) < 2:
            continue
        worst = {name: (0.0, None) for name in outputs}
        for row, text in enumerate(batch):
            single = encoder.encode_items([text])
            try:
                alone = model.run(single)
            except Exception as error:  # a graph with a fixed batch or sequence axis
                shape = "x".join(map(str, single["input_ids"].shape))
                checks.append(CheckResult(f"runs at shape {shape}", "*", False, {"max_abs_diff": float("inf")},
                                          {"max_abs_diff": atol}, _shown(text), note=first_line(error, 200)))
                worst = {}
                break
            length = int(arrays["attention_mask"][row].sum())
            for name, info in outputs.items():
                if SEQUENCE_AXIS in info.dims[1:2]:
                    with np.errstate(invalid="ignore"):
                        diff = np.abs(got[name][row, :length] - alone[name][0, :length]).max()
                else:
                    with np.errstate(invalid="ignore"):
                        diff = np.abs(got[name][row] - alone[name][0]).max()
                diff = float(diff) if np.isfinite(diff) else float("inf")  # NaN must not slip past >=
                if diff >= worst[name][0]:
                    worst[name] = (diff, text)
        for name, (diff, text) in worst.items():
            checks.append(CheckResult(f"padding invariance{_kind_label(kind)} b{len(batch)}", name, diff <= atol,
                                      {"max_abs_diff": diff}, {"max_abs_diff": atol}, _shown(text)))
    return checks


def _embedding_check(model: OnnxModel, encoder: TextEncoder, texts: list[str], atol: float,
                     reference: EmbeddingReference, prompt: str = "",
                     output: str = "sentence_embedding") -> CheckResult:
    # The reference applies the folder's default prompt itself; the pipelines put it before each text.
    expected = reference.encode(texts)
    prompted = [prompt + text for text in texts]
    order = length_order(encoder, prompted)  # batches of similar length: little padding
    parts = [model.run(encoder.encode([prompted[i] for i in order[start:start + 16]]))[output]
             for start in range(0, len(order), 16)]
    got = np.empty_like(np.concatenate(parts))
    got[order] = np.concatenate(parts)  # back in text order
    cosines = row_cosines(got, expected)
    diff = np.abs(got - expected).max(axis=1)
    worst = int(cosines.argmin())
    measured = {"min_cosine": float(cosines.min()), "max_abs_diff": float(diff.max())}
    limits = {"min_cosine": EMBEDDING_MIN_COSINE, "max_abs_diff": atol}
    passed = measured["min_cosine"] >= EMBEDDING_MIN_COSINE and measured["max_abs_diff"] <= atol
    return CheckResult(reference.name, output, passed, measured, limits, short(texts[worst]),
                       list(got.shape))


# ---------------------------------------------------------------- quality (int8 / fp16)

def _verify_quality(art: Artifact, model: OnnxModel, encoder: TextEncoder, texts: list[str], model_file: str,
                    limits: dict[str, float], progress=None) -> ParityReport:
    say = progress or (lambda message: None)
    reference = OnnxReference(art)
    got, expected = [], []
    shapes = []
    inputs, shown = judged_inputs(art.task, encoder, texts)
    batches, masks = judged_batches(art.task, encoder, inputs, 16)
    for number, arrays in enumerate(batches, 1):
        shapes.append(list(arrays["input_ids"].shape))
        say(f"verifying {model_file}: quality batch {number}/{len(batches)} "
            f"(b{shapes[-1][0]} x {shapes[-1][1]} tokens)")
        got.append(model.run(arrays))
        expected.append(reference.run(arrays))
    checks = quality_checks(art.task, art.outputs[0].name, got, expected, masks, shown, limits, art.labels)
    return ParityReport(model_file, "quality", reference.name, checks, len(texts), shapes,
                        unverified_reason=reference.unverified_reason)
