"""The one place that calls torch.onnx.export: spec in, verified artifact directory out.

Steps: load the source, decide input/output names and dynamic axes, export (TorchScript
by default, dynamo as the fallback), stamp opset/IR for the target onnxruntime, write the
artifact beside OUT, verify it there, and only then rename it to OUT.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

from ..checks.parity import verify as run_verify
from ..checks.report import NOT_VERIFIED
from ..checks.text_checks import checked_texts
from ..core.arguments import optional_positive_int, path_arg
from ..core.artifact import LABELS_FILE, Artifact, check_output_dir, staging_dir, write_manifest
from ..core.files import file_facts
from ..core.messages import first_line
from ..core.model_files import MODEL_FILE
from ..core.spec import Exporter, ExportSpec, Pooling, Task, TensorInfo
from ..core.version import __version__
from ..errors import ExportError, InputError, OnnxportError, ParityError
from ..graph import opsets
from ..graph import tags as module_tags
from ..graph.onnx_files import EXTERNAL_DATA_THRESHOLD, save_onnx
from .references import best_references
from .requirements import require_export
from .sources import Source, load_source, max_length_for

Progress = Callable[[str], None]


def export(
    model: Any = None,
    *,
    out: str | Path,
    task: str | Task | None = None,
    tokenizer: Any = None,
    pooling: str | Pooling | None = None,
    normalize: bool | None = None,
    opset: int | None = None,
    target_ort: str | None = None,
    exporter: str | Exporter = Exporter.TORCHSCRIPT,
    int32: bool = False,
    token_type_ids: bool | None = None,
    static_shape: tuple[int, int] | None = None,
    output_names: Sequence[str] | None = None,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    force: bool = False,
    verify: bool = True,
    texts: Sequence[str] | None = None,
    atol: float = 1e-4,
    external_data_threshold: int = EXTERNAL_DATA_THRESHOLD,
    hierarchy: bool = True,
    progress: Progress | None = None,
) -> Artifact:
    """Export `model` (folder, cached hub id, nn.Module, or None for all-MiniLM-L6-v2) to `out`.

    Returns the artifact. With `verify=True` (the default) the artifact's manifest holds
    the parity report; a failed verification raises ParityError after the artifact is
    written, so the evidence stays on disk. With `hierarchy=True` every node carries its
    PyTorch module in metadata_props and the artifact gets hierarchy.json (see graph/tags.py).
    """
    require_export("exporting")
    from .wrapper import build_wrapper  # imports torch, so only after the check

    say = progress or (lambda message: None)
    out = path_arg(out, "out")
    opset = optional_positive_int(opset, "opset")
    if target_ort is not None and not isinstance(target_ort, str):
        raise InputError(f"target_ort must be a version string such as '1.16', not {target_ort!r}")
    check_output_dir(out, force=force)
    task = _as_enum(Task, task, "task")
    pooling = _as_enum(Pooling, pooling, "pooling")
    exporter = _as_enum(Exporter, exporter, "exporter")
    if not isinstance(atol, (int, float)) or not atol >= 0:
        raise InputError(f"atol must be a number of at least 0, not {atol!r}")
    if texts is not None:
        texts = checked_texts(texts)  # before any model loads: one string, non-strings, only blanks
    if static_shape is not None and (len(static_shape) != 2 or min(static_shape) < 1):
        raise InputError(f"static shape must be two positive ints BATCH,SEQUENCE, not {static_shape}")
    target = target_ort or opsets.installed_ort_version()
    chosen_opset, max_ir = _choose_opset(opset, target, exporter)

    say("loading the source model")
    source = load_source(model, task=task, tokenizer=tokenizer, allow_pickle=allow_pickle,
                         trust_remote_code=trust_remote_code)
    spec = _resolve_spec(source, pooling=pooling, normalize=normalize, opset=chosen_opset, target=target,
                         exporter=exporter, int32=int32, token_type_ids=token_type_ids,
                         static_shape=static_shape, output_names=output_names)
    say(f"task {spec.task.value}" + _task_details(source, spec))
    was_training = source.module.training
    try:
        wrapper, dummy, inputs, outputs = build_wrapper(source, spec)
        with staging_dir(out, force=force) as staging:
            say(f"exporting with the {spec.exporter.value} exporter at opset {spec.opset}")
            used = _export_with_fallback(wrapper, dummy, inputs, outputs, staging / MODEL_FILE, spec, say)
            if used is not spec.exporter:
                spec = _replace(spec, exporter=used)
            say("checking and stamping the graph" + (", tagging module hierarchy" if hierarchy else ""))
            modules = None
            if hierarchy:
                from .module_tags import module_index

                modules = module_index(wrapper, source.module)
            model_info = finalize_graph(staging / MODEL_FILE, inputs, outputs, opset=spec.opset, max_ir=max_ir,
                                        task=spec.task, external_data_threshold=external_data_threshold,
                                        hierarchy=modules)
            say("writing tokenizer, config and manifest")
            manifest = _write_artifact_files(staging, source, spec, inputs, outputs, model_info, target)
            artifact = Artifact(staging)
            report = None
            if verify:
                say("verifying against PyTorch over the shape matrix")
                reference, embedding_reference, notes = best_references(artifact, wrapper=wrapper)
                report = run_verify(artifact, texts=texts, atol=atol, reference=reference,
                                    embedding_reference=embedding_reference, notes=notes, record=True,
                                    progress=progress)
            else:
                manifest["files"][MODEL_FILE]["verification"] = None
                write_manifest(staging, manifest)
    finally:
        source.module.train(was_training)
    artifact = Artifact(out)
    if report is not None and report.verdict == NOT_VERIFIED:
        raise ParityError(
            f"the export in {out} was written but could not be verified: "
            f"{report.unverified_reason or 'no checks ran'} (then run `onnxport verify {out}`)"
        )
    if report is not None and not report.passed:
        note = report.failures()[0].note
        raise ParityError(
            f"the export in {out} does not match PyTorch: {report.failure_summary()}"
            + (f" ({note})" if note else "") + f"; see `onnxport verify {out}` for the table"
        )
    return artifact


def _as_enum(enum, value, what: str):
    if value is None or isinstance(value, enum):
        return value
    try:
        return enum(value)
    except ValueError:
        choices = ", ".join(member.value for member in enum)
        raise InputError(f"unknown {what} '{value}'; choose one of: {choices}") from None


def _replace(spec: ExportSpec, **changes) -> ExportSpec:
    import dataclasses

    return dataclasses.replace(spec, **changes)


def exporter_max_opset(exporter: Exporter) -> int:
    from torch.onnx import _constants

    if exporter is Exporter.TORCHSCRIPT:
        return _constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET
    return _constants.ONNX_MAX_OPSET


def _choose_opset(opset: int | None, target: str, exporter: Exporter) -> tuple[int, int]:
    """(opset, max IR version) for the target onnxruntime; a too-new --opset is an error."""
    max_ir, max_opset = opsets.capability(target)
    exporter_limit = exporter_max_opset(exporter)
    usable = min(max_opset, exporter_limit)  # the newest opset both this exporter writes and the target runs
    if usable < opsets.MIN_SUPPORTED_OPSET:
        oldest = opsets.min_ort_for(0, opsets.MIN_SUPPORTED_OPSET)
        raise ExportError(
            f"onnxruntime {target} runs at most opset {max_opset}, but transformer encoders need opset "
            f"{opsets.MIN_SUPPORTED_OPSET} or newer; pass --target-ort {oldest} or newer"
        )
    if opset is None:
        return usable, max_ir
    if opset > max_opset:
        raise ExportError(
            f"opset {opset} is newer than onnxruntime {target} runs (its newest is opset {max_opset}); "
            f"pass --opset {usable} or lower" + (", or a newer --target-ort" if opset <= exporter_limit else "")
        )
    if opset > exporter_limit:
        other = Exporter.DYNAMO if exporter is Exporter.TORCHSCRIPT else Exporter.TORCHSCRIPT
        switch = f" or --exporter {other.value}" if opset <= exporter_max_opset(other) else ""
        raise ExportError(
            f"the {exporter.value} exporter writes at most opset {exporter_limit}; pass --opset {usable} "
            f"or lower{switch}"
        )
    if opset < opsets.MIN_SUPPORTED_OPSET:
        raise ExportError(f"opset {opset} is too old for transformer encoders; pass --opset "
                          f"{opsets.MIN_SUPPORTED_OPSET} to {usable}")
    return opset, max_ir


def _resolve_spec(source: Source, *, pooling, normalize, opset, target, exporter, int32, token_type_ids,
                  static_shape, output_names) -> ExportSpec:
    task = source.task
    if task is Task.SENTENCE_EMBEDDING:
        if source.st is not None:
            pooling = pooling or source.st.pooling
            normalize = source.st.normalize if normalize is None else normalize
        pooling = pooling or Pooling.MEAN
        normalize = bool(normalize)
    elif pooling is not None or normalize:
        raise InputError(f"--pooling and --normalize apply to sentence-embedding, not {task.value}")
    splade = (source.st.splade if source.st is not None and source.st.splade else ("max", "relu")) \
        if task is Task.SPARSE_EMBEDDING else (None, None)
    if output_names is not None and task is not Task.CUSTOM:
        raise InputError(f"--output-names is for task custom; {task.value} outputs are named by onnxport")
    max_length = max_length_for(source)
    if static_shape and static_shape[1] > max_length:
        raise InputError(f"static sequence length {static_shape[1]} is above the model's max length {max_length}")
    return ExportSpec(
        task=task, pooling=pooling if task is Task.SENTENCE_EMBEDDING else None,
        normalize=bool(normalize) if task is Task.SENTENCE_EMBEDDING else False,
        opset=opset, target_ort=target, exporter=exporter, int32_inputs=int32,
        token_type_ids=token_type_ids, static_shape=tuple(static_shape) if static_shape else None,
        max_length=max_length, output_names=tuple(output_names) if output_names else None,
        splade_pooling=splade[0], splade_activation=splade[1],
    )


def _dynamic_axes(infos: list[TensorInfo]) -> dict[str, dict[int, str]]:
    return {info.name: {axis: dim for axis, dim in enumerate(info.dims) if isinstance(dim, str)} for info in infos}


def _export_with_fallback(wrapper, dummy, inputs, outputs, path: Path, spec: ExportSpec, say: Progress) -> Exporter:
    order = [spec.exporter] + [e for e in Exporter if e is not spec.exporter]
    errors = []
    for exporter in order:
        try:
            if exporter is not spec.exporter:
                warnings.warn(f"the {spec.exporter.value} exporter failed ({errors[-1]}); "
                              f"falling back to the {exporter.value} exporter", stacklevel=2)
                say(f"{spec.exporter.value} export failed, falling back to {exporter.value}")
            run_torch_export(wrapper, dummy, inputs, outputs, path, exporter, min(spec.opset, exporter_max_opset(exporter)))
            return exporter
        except OnnxportError:
            raise
        except Exception as error:  # the exporters raise many unrelated types
            errors.append(f"{type(error).__name__}: {first_line(error)}")
            for leftover in path.parent.glob(path.name + "*"):
                leftover.unlink()
    raise ExportError("both exporters failed: " + "; ".join(errors) +
                      ". Check that the model runs in PyTorch on a tokenized batch")


def run_torch_export(wrapper, dummy, inputs, outputs, path: Path, exporter: Exporter, opset: int) -> None:
    import torch

    input_names = [i.name for i in inputs]
    output_names = [o.name for o in outputs]
    with warnings.catch_warnings(), contextlib.redirect_stdout(_Discard()):
        warnings.simplefilter("ignore")
        if exporter is Exporter.TORCHSCRIPT:
            torch.onnx.export(
                wrapper, dummy, str(path), dynamo=False, opset_version=opset, do_constant_folding=True,
                input_names=input_names, output_names=output_names,
                dynamic_axes={k: v for k, v in _dynamic_axes(inputs + outputs).items() if v},
            )
        else:
            dynamic = tuple(
                {axis: torch.export.Dim.DYNAMIC for axis, dim in enumerate(i.dims) if isinstance(dim, str)} or None
                for i in inputs
            )
            program = torch.onnx.export(
                wrapper, dummy, dynamo=True, opset_version=opset, input_names=input_names,
                # The wrapper takes *inputs, so the spec is one tuple for that one parameter.
                output_names=output_names, dynamic_shapes=(dynamic,) if any(dynamic) else None, verbose=False,
            )
            program.save(str(path), external_data=False)


class _Discard:
    def write(self, text):  # the dynamo exporter prints progress lines
        return len(text)

    def flush(self):
        pass


def finalize_graph(path: Path, inputs: list[TensorInfo], outputs: list[TensorInfo], *, opset: int, max_ir: int,
                   task: Task, external_data_threshold: int, hierarchy=None) -> dict:
    """Name dynamic dims, lower the IR version for old runtimes, tag nodes with their module
    when given a `hierarchy.ModuleIndex`, check, and save (with external data when large).
    Returns facts for the manifest."""
    import onnx

    model = onnx.load(str(path))
    declared = {i.name: i for i in inputs + outputs}
    for value in list(model.graph.input) + list(model.graph.output):
        info = declared.get(value.name)
        if info is None:
            continue
        for dim_proto, dim in zip(value.type.tensor_type.shape.dim, info.dims):
            if isinstance(dim, str):
                dim_proto.dim_param = dim
            else:
                dim_proto.dim_value = dim
    graph_opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=opset)
    model.ir_version = max(opsets.min_ir_for_opset(graph_opset), min(model.ir_version, max_ir))
    del model.metadata_props[:]
    for key, value in {"onnxport.task": task.value, "onnxport.version": __version__}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    # producer_name stays the exporter's ("pytorch"): onnxruntime's transformer optimizer
    # reads it to recognise the graph; onnxport identifies itself in metadata_props.
    if hierarchy is not None:
        module_tags.tag_exported(model, hierarchy)
    for leftover in path.parent.iterdir():  # per-tensor files a large TorchScript export leaves
        if leftover != path:
            leftover.unlink()
    files = save_onnx(model, path, external_data_threshold=external_data_threshold)
    onnx.checker.check_model(str(path), full_check=True)
    if hierarchy is not None:
        module_tags.write_sidecar(path.parent, path.name, model)
    return {
        "opset": graph_opset,
        "ir_version": model.ir_version,
        "min_onnxruntime": opsets.min_ort_for(model.ir_version, graph_opset),
        **file_facts(files),
    }


def _task_details(source: Source, spec: ExportSpec) -> str:
    """What the export summary says after the task: how texts become the outputs."""
    if spec.task is Task.SENTENCE_EMBEDDING:
        prompt = source.st.default_prompt if source.st else ""
        return (f", pooling {spec.pooling.value}, normalize {spec.normalize}"
                + (f", default prompt {prompt!r}" if prompt else ""))
    if spec.task is Task.TEXT_RANKING:
        return f", one score per (query, document) pair, {source.score_activation} of the logit"
    if spec.task is Task.QUESTION_ANSWERING:
        return ", start and end logits per token of (question, context); answers are spans of the context"
    if spec.task is Task.SPARSE_EMBEDDING:
        prompt = source.st.default_prompt if source.st else ""
        return (f", SPLADE: {spec.splade_pooling} over tokens of log(1 + "
                f"{'log(1 + relu(logits))' if spec.splade_activation == 'log1p_relu' else 'relu(logits)'})"
                + (f", default prompt {prompt!r}" if prompt else ""))
    if spec.task is Task.FILL_MASK:
        mask = getattr(source.tokenizer, "mask_token", None)
        return f", vocabulary logits per token; fill predicts each {mask or 'mask token'}"
    return ""


def _prompts(source: Source, spec: ExportSpec) -> dict:
    """The manifest's prompts: sentence-transformers puts the default one before every text."""
    if source.st is None or spec.task not in (Task.SENTENCE_EMBEDDING, Task.SPARSE_EMBEDDING) or not source.st.prompts:
        return {}
    return {"prompts": {"prompts": source.st.prompts, "default_prompt_name": source.st.default_prompt_name}}


def _write_artifact_files(staging: Path, source: Source, spec: ExportSpec, inputs, outputs, model_info: dict,
                          target: str) -> dict:
    import onnx
    import onnxruntime
    import torch
    import transformers

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        source.tokenizer.save_pretrained(staging)
    if not (staging / "tokenizer.json").exists():
        raise ExportError("the tokenizer did not save a tokenizer.json; onnxport needs a fast tokenizer")
    if source.config is not None and hasattr(source.config, "save_pretrained"):
        source.config.save_pretrained(staging)
    if source.id2label:
        (staging / LABELS_FILE).write_text(json.dumps({str(k): v for k, v in sorted(source.id2label.items())},
                                                      indent=2) + "\n")
    tok = source.tokenizer
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    manifest = {
        "format_version": 1,
        "onnxport_version": __version__,
        "task": spec.task.value,
        "spec": spec.to_dict(),
        "source": source.describe(),
        **_prompts(source, spec),
        **({"ranking": {"activation": source.score_activation}} if source.score_activation else {}),
        "inputs": [i.to_dict() for i in inputs],
        "outputs": [o.to_dict() for o in outputs],
        "tokenizer": {
            "max_length": spec.max_length,
            "pad_id": int(pad_id),
            "pad_token": tok.pad_token or tok.convert_ids_to_tokens(int(pad_id)),
            "padding_side": getattr(tok, "padding_side", "right"),
        },
        "opset": model_info["opset"],
        "ir_version": model_info["ir_version"],
        "min_onnxruntime": model_info["min_onnxruntime"],
        "target_onnxruntime": target,
        "versions": {
            "onnxport": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
        },
        "files": {
            MODEL_FILE: {
                "kind": "fp32",
                **{key: model_info[key] for key in ("sha256", "size_bytes", "mtime_ns", "external_data")},
            }
        },
    }
    write_manifest(staging, manifest)
    return manifest
