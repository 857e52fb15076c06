"""The `onnxport` command: one thin command per verb; bodies call the public API
(`onnxport.export`, `verify`, ...) and hand results to `render`.

Every command runs inside `OnnxportGroup.invoke`, the one place failures become exit codes
(listed in `onnxport --help`, docs/errors.md): a user mistake (OnnxportError) or an OS error
from the user's environment is one `error:` line on stderr and exit 2 (1 for a failed check),
Ctrl-C exits 130, and anything else is a bug: exit 3 with a "please report" line, its
traceback only under `onnxport --debug` (which re-raises it, so tests see it).
"""

from __future__ import annotations

import errno
import json
import sys
import time
import warnings
from pathlib import Path

import click
from rich.markup import escape

import onnxport

from ..core.arguments import PAIR_FIELD, text_pair
from ..core.artifact import verdict_of
from ..core.messages import first_line
from ..core.model_files import MODEL_FILE
from ..core.spec import Pooling, Task
from ..core.version import __version__
from ..errors import InputError, OnnxportError, ParityError
from . import render
from .cli_options import apply_options as _apply
from .cli_options import run_options as _run_options
from .cli_predict import fill_mask, qa
from .render import console, stdout
from .textio import read_texts


# What to do about an OSError from the user's environment, by errno.
_OS_ERROR_HINTS = {
    errno.EACCES: "check its permissions, or choose another path",
    errno.EPERM: "check its permissions, or choose another path",
    errno.EROFS: "that file system is read-only; choose a path on a writable disk",
    errno.ENOSPC: "the disk is full; free some space, or choose a path on another disk",
    errno.EDQUOT: "the disk quota is used up; free some space, or choose a path on another disk",
    errno.ENOENT: "check the path; create a missing directory first",
    errno.ENOTDIR: "a part of the path is a file, not a directory; check the path",
    errno.EISDIR: "it is a directory; give a file path",
    errno.ENAMETOOLONG: "choose a shorter path",
    errno.EEXIST: "it already exists; remove it, or choose another path",
}


class OnnxportGroup(click.Group):
    """The `onnxport` group. Every command runs inside `invoke`, so every failure becomes one
    line on stderr and one of the exit codes in the group's help."""

    def invoke(self, ctx: click.Context):
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return self._invoke(ctx)

    def _invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # click's own: usage errors exit 2, --help and --version 0
        except OnnxportError as error:
            _fail(str(error), error.exit_code)
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]")
            sys.exit(130)
        except OSError as error:
            if error.errno == errno.EPIPE:
                raise  # stdout closed early (`| head`): click exits quietly
            if error.errno not in _OS_ERROR_HINTS and error.filename is None:
                _internal_error(ctx, error)
                raise
            _fail(describe_os_error(error), 2)
        except Exception as error:
            _internal_error(ctx, error)
            raise


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings (a failed or changed file picked, a provider falling back to CPU) as one
    `warning:` line, without Python's file:line prefix."""
    console.print(f"[yellow]warning:[/] {escape(str(message))}")


def describe_os_error(error: OSError) -> str:
    """`PATH: REASON; WHAT TO DO` for an OSError (the path is missing from some, e.g. a write
    to a full disk)."""
    reason = error.strerror or first_line(error)
    path = error.filename if error.filename2 is None else f"{error.filename} -> {error.filename2}"
    hint = _OS_ERROR_HINTS.get(error.errno, "check the path and try again")
    return f"{path}: {reason}; {hint}" if path is not None else f"{reason}; {hint}"


def _fail(message: str, code: int):
    console.print(f"[bold red]error:[/] {escape(message)}")
    sys.exit(code)


def _internal_error(ctx: click.Context, error: Exception) -> None:
    """Say it is a bug and exit 3; under --debug return, so the caller re-raises it whole."""
    console.print(f"[bold red]internal error:[/] {escape(type(error).__name__)}: {escape(first_line(error))}")
    if ctx.params.get("debug"):
        return
    console.print("this is a bug in onnxport: please report it with the command you ran and `onnxport "
                  "--version`; rerun with `onnxport --debug ...` for the traceback", markup=False)
    sys.exit(3)


def _static_shape(ctx, param, value):
    if value is None:
        return None
    try:
        batch, sequence = (int(part) for part in value.split(","))
    except ValueError:
        raise click.BadParameter("write it as BATCH,SEQUENCE, for example 1,128") from None
    return batch, sequence


@click.group(cls=OnnxportGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="onnxport")
@click.option("--debug", is_flag=True, envvar="ONNXPORT_DEBUG",
              help="Raise internal errors with their full traceback (also ONNXPORT_DEBUG=1).")
def main(debug: bool) -> None:
    """Export transformer encoders to verified ONNX artifacts, and run them.

    \b
    Exit codes:
      0    ok
      1    a check failed (verification, quality targets, nothing to verify against)
      2    bad input: a wrong argument or file, a damaged artifact, a missing extra,
           or the system refused (permissions, read-only or full disk, missing
           directory); one `error:` line says what to do, nothing half-written is kept
      3    internal error: a bug in onnxport, please report it (--debug: traceback)
      130  interrupted (Ctrl-C)
    """


@main.command()
@click.option("-m", "--model", "model", help="Model folder or cached hub id [default: built-in all-MiniLM-L6-v2].")
@click.option("--tokenizer", type=click.Path(path_type=Path),
              help="Folder of the model's tokenizer, when the model folder has none [default: the model folder].")
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path), help="Artifact directory to write.")
@click.option("--task", type=click.Choice([task.value for task in Task if task is not Task.CUSTOM]),
              help="What to export [default: detected from the model].")
@click.option("--pooling", type=click.Choice([p.value for p in Pooling]),
              help="Sentence-embedding pooling [default: from the sentence-transformers config, else mean].")
@click.option("--normalize/--no-normalize", default=None, help="L2-normalize sentence embeddings.")
@click.option("--opset", type=int, help="ONNX opset [default: newest the target onnxruntime runs].")
@click.option("--target-ort", help="onnxruntime version the artifact must run on, e.g. 1.16 [default: installed].")
@click.option("--exporter", type=click.Choice(["torchscript", "dynamo"]), default="torchscript", show_default=True,
              help="torch.onnx exporter; the other one is tried if this one fails.")
@click.option("--int32", is_flag=True, help="Graph takes int32 ids and masks.")
@click.option("--token-type-ids/--no-token-type-ids", default=None,
              help="Keep or drop the token_type_ids input (dropped: zeros are fed inside the graph).")
@click.option("--static-shape", callback=_static_shape, metavar="B,S", help="Fix batch and sequence sizes.")
@click.option("--output-names", help="Comma-separated output names (custom modules only).")
@click.option("--allow-pickle", is_flag=True, help="Allow loading pickle (.bin/.pt) weights.")
@click.option("--trust-remote-code", is_flag=True, help="Allow the model's own Python code to run.")
@click.option("--force", is_flag=True, help="Replace OUT if it exists and is not empty.")
@click.option("--verify/--no-verify", default=True, show_default=True, help="Verify the export against PyTorch.")
@click.option("--texts", type=click.Path(path_type=Path), help="Texts to verify with (one per line or JSONL).")
@click.option("--atol", type=click.FloatRange(min=0), default=1e-4, show_default=True,
              help="Verification tolerance.")
@click.option("--hierarchy/--no-hierarchy", default=True, show_default=True,
              help="Tag every node with its PyTorch module (node metadata) and write hierarchy.json.")
@click.option("--optimize", "optimize_after", is_flag=True, help="Also write the fused model.opt.onnx.")
@click.option("--quantize", "quantize_after", is_flag=True,
              help="Also write the accuracy-guarded model.int8.onnx (fuses first, as --optimize).")
def export(model, tokenizer, out, task, pooling, normalize, opset, target_ort, exporter, int32, token_type_ids,
           static_shape, output_names, allow_pickle, trust_remote_code, force, verify, texts, atol, hierarchy,
           optimize_after, quantize_after):
    """Export a model to a verified ONNX artifact directory."""
    started = time.perf_counter()
    verify_texts = read_texts(texts) if texts else None
    artifact = None
    try:
        artifact = onnxport.export(
            model, out=out, tokenizer=tokenizer, task=task, pooling=pooling, normalize=normalize, opset=opset,
            target_ort=target_ort,
            exporter=exporter, int32=int32, token_type_ids=token_type_ids, static_shape=static_shape,
            output_names=output_names.split(",") if output_names else None, allow_pickle=allow_pickle,
            trust_remote_code=trust_remote_code, force=force, verify=verify, texts=verify_texts, atol=atol,
            hierarchy=hierarchy,
            progress=_steps(started),
        )
    except OnnxportError as error:
        if error.exit_code == 1 and out.exists():  # failed verification: show the evidence first
            render.print_report(onnxport.Artifact(out).files[MODEL_FILE]["verification"])
        raise
    render.print_summary(artifact)
    if optimize_after or quantize_after:
        say = _steps(started)
        _optimize_and_quantize(artifact, quantize_after, verify, verify_texts, say)
    console.print(f"[green]done[/] in {time.perf_counter() - started:.1f}s: {out}")


def _optimize_and_quantize(artifact, quantize_after: bool, verify: bool, texts, say) -> None:
    """`export --optimize/--quantize`: fuse, then quantize the fused file (onnxruntime's advice for
    transformers: quantize after fusion, so Attention becomes one quantized op)."""
    name, counts, report = onnxport.optimize(artifact, level="fused", verify=verify, texts=texts, progress=say)
    render.print_fusion(name, counts, report)
    if report is not None and report.verdict == "failed":
        raise ParityError(f"{name} failed verification, so it was not quantized; see `onnxport verify "
                          f"{artifact.path} --model-file {name}`")
    if quantize_after:
        say("quantizing to int8 (accuracy-guarded)")
        entry = onnxport.quantize(artifact, input_file=name, texts=texts, progress=say)
        render.print_quantization(entry)
        if verdict_of(entry["verification"]) == "failed":
            raise ParityError("model.int8.onnx misses its quality targets (see the table above)")


@main.command()
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--model-file", default=MODEL_FILE, show_default=True, help="Which model file of the artifact.")
@click.option("--reference", type=click.Path(path_type=Path), help="Reference model folder [default: the source].")
@click.option("--texts", type=click.Path(path_type=Path), help="Texts file (one per line or JSONL).")
@click.option("--atol", type=click.FloatRange(min=0), default=1e-4, show_default=True,
              help="Tolerance for fp32 files.")
@click.option("--allow-pickle", is_flag=True, help="Allow the reference's pickle (.bin/.pt) weights to load.")
@click.option("--record", is_flag=True,
              help="Make this report the file's verdict even with --texts/--atol/--reference "
                   "[default: such runs are kept beside the export's verdict].")
@click.option("--engine", type=click.Choice(["onnxruntime", "openvino"]), default="onnxruntime", show_default=True,
              help="Run model.onnx with OpenVINO instead (onnxport[openvino]); its verdict is kept for that engine.")
@click.option("--precision", type=click.Choice(["f32", "bf16"]),
              help="With --engine openvino: f32 (judged like model.onnx) or bf16 (by quality; CPUs with "
                   "AMX / AVX512-BF16) [default: f32].")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify(artifact, model_file, reference, texts, atol, allow_pickle, record, engine, precision, as_json):
    """Check an artifact against PyTorch (fp32) or its fp32 model (int8/fp16); exit 1 on a mismatch
    or when there is nothing to compare with."""
    if precision and engine != "openvino":
        raise click.UsageError("--precision goes with --engine openvino")
    report = onnxport.verify(artifact, model_file=model_file, reference=reference,
                             texts=read_texts(texts) if texts else None, atol=atol, allow_pickle=allow_pickle,
                             record=True if record else None, progress=_steps(), engine=engine,
                             precision=precision)
    data = report.to_dict()
    if as_json:
        stdout.print_json(json.dumps(data))
    else:
        render.print_report(data)
    render.print_recorded(report.recorded, model_file)
    sys.exit(0 if report.passed else 1)


@main.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON.")
@click.option("--hierarchy", is_flag=True, help="Show the PyTorch module tree: nodes, op types, parameters.")
@click.option("--depth", type=click.IntRange(min=0), help="With --hierarchy: deepest module level to list.")
@click.option("--deep", is_flag=True, help="Compare every model file's sha256 with the manifest "
                                            "[default: only when its size or mtime changed].")
def inspect(path, as_json, hierarchy, depth, deep):
    """Show what is inside a .onnx file or an artifact, without running it."""
    if hierarchy:
        return _inspect_hierarchy(path, depth, as_json)
    if depth is not None:
        raise click.UsageError("--depth goes with --hierarchy")
    info = onnxport.inspect(path, deep=deep)
    if as_json:
        stdout.print_json(json.dumps(info))
        return
    render.print_inspection(info)


def _targets(ctx, param, values) -> dict[str, float]:
    from ..checks.quality import QUALITY_DEFAULTS

    targets = {}
    for value in values:
        key, _, number = value.partition("=")
        key = key.strip().replace("-", "_")
        if key not in QUALITY_DEFAULTS:
            raise click.BadParameter(f"unknown metric '{key}'; choose from {', '.join(QUALITY_DEFAULTS)}")
        try:
            targets[key] = float(number)
        except ValueError:
            raise click.BadParameter("write it as METRIC=NUMBER, for example mean_cosine=0.995") from None
    return targets


@main.command()
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--level", type=click.Choice(["fused", "fused-gelu-approx", "fp16"]), default="fused",
              show_default=True, help="fused: exact fusions; fused-gelu-approx: also tanh GELU; fp16: for GPUs.")
@click.option("--texts", type=click.Path(path_type=Path), help="Texts to verify with (one per line or JSONL).")
@click.option("--verify/--no-verify", default=True, show_default=True)
def optimize(artifact, level, texts, verify):
    """Fuse the encoder's ops (Attention, SkipLayerNorm, ...) into model.opt.onnx and verify it."""
    name, counts, report = onnxport.optimize(artifact, level=level, verify=verify,
                                             texts=read_texts(texts) if texts else None, progress=_steps())
    render.print_fusion(name, counts, report)
    if report is not None:
        render.print_report(report.to_dict())
        sys.exit(0 if report.passed else 1)


@main.command()
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--mode", type=click.Choice(["dynamic", "static"]), default="dynamic", show_default=True,
              help="dynamic: activations quantized at run time; static: calibrated on texts.")
@click.option("--isa", type=click.Choice(["avx512_vnni", "avx512", "avx2", "arm64", "generic"]),
              help="CPU instruction set to quantize for [default: detected].")
@click.option("--texts", type=click.Path(path_type=Path),
              help="Texts to calibrate and measure quality on (one per line or JSONL) [default: built-in].")
@click.option("--target", "targets", multiple=True, callback=_targets, metavar="METRIC=VALUE",
              help="Quality target, e.g. mean_cosine=0.995, min_cosine=0.98, label_agreement=0.99 (repeatable).")
@click.option("--guard/--no-guard", default=True, show_default=True,
              help="Keep the most sensitive parts in float until the targets hold; --no-guard quantizes all.")
@click.option("--input-file", help="Model file to quantize [default: model.opt.onnx when verified, else model.onnx].")
@click.option("--exclude-modules", "exclude_modules", multiple=True, metavar="PATTERN",
              help="Keep nodes of matching PyTorch modules in float (glob, repeatable).")
def quantize(artifact, mode, isa, texts, targets, guard, input_file, exclude_modules):
    """Write the int8 model.int8.onnx, accuracy-guarded, and report quality and speed-up."""
    started = time.perf_counter()
    entry = onnxport.quantize(artifact, mode=mode, isa=isa, texts=read_texts(texts) if texts else None,
                              targets=targets or None, guard=guard, input_file=input_file,
                              exclude_modules=exclude_modules,
                              progress=_steps(started))
    render.print_quantization(entry)
    sys.exit(0 if entry["verification"]["passed"] else 1)


def _inspect_hierarchy(path, depth, as_json) -> None:
    from ..graph.tags import inspect_hierarchy

    tree = inspect_hierarchy(path, depth)
    if as_json:
        stdout.print_json(json.dumps(tree))
        return
    render.print_hierarchy(tree)


@main.command()
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--model", "model_kind", type=click.Choice(["auto", "fp32", "opt", "int8"]), default="auto",
              show_default=True, help="Which model file of the artifact.")
@click.option("--texts", type=click.Path(path_type=Path),
              help="Texts to run (one per line or JSONL) [default: 64 built-in texts of mixed length].")
@click.option("--depth", type=click.IntRange(min=0), default=3, show_default=True,
              help="Module level of the rows: 1 = embeddings/encoder, 3 = encoder.layer.N.attention.")
@click.option("--merge-layers", is_flag=True, help="Add up repeated blocks: encoder.layer.*.attention.")
@click.option("--batch-size", type=click.IntRange(min=1),
              help="Texts per model run [default: 16; with --stages 32, as the pipelines].")
@click.option("--repeat", type=click.IntRange(min=1), help="Passes over the texts [default: 1; with --stages 3].")
@click.option("--threads", type=click.IntRange(min=1), help="Intra-op threads [default: physical cores].")
@click.option("--stages", is_flag=True,
              help="Time the whole pipeline call instead (tokenize, pad, feed, run, pool, other).")
@click.option("--json", "as_json", is_flag=True, help="Print the profile as JSON (rows and per-node times).")
def profile(artifact, model_kind, texts, depth, merge_layers, batch_size, repeat, threads, stages, as_json):
    """Where inference time goes per PyTorch module (onnxruntime's profiler on real batches),
    or with --stages where a whole embed/classify/extract/score call spends it.

    \b
    Example:
      onnxport profile out/minilm --merge-layers
      onnxport profile out/minilm --stages --model fp32
    """
    texts = read_texts(texts) if texts else None
    if stages:
        from .stages import profile_stages

        data = profile_stages(artifact, model=model_kind, texts=texts, batch_size=batch_size or 32,
                              repeat=repeat or 3, threads=threads).to_dict()
        if as_json:
            stdout.print_json(json.dumps(data))
        else:
            render.print_stages(data)
        return
    from .profile import profile as run_profile

    result = run_profile(artifact, model=model_kind, texts=texts, batch_size=batch_size or 16, repeat=repeat or 1,
                         threads=threads)
    data = result.to_dict(depth, merge_layers)
    if as_json:
        stdout.print_json(json.dumps(data))
        return
    render.print_profile(data, depth)


def pipeline_options(command):
    """Options shared by embed, ner and classify."""
    options = _run_options()[:4] + [
        click.option("--pair-field", help="classify only: each .jsonl/.csv/.parquet row is a sentence pair, its first "
                                          "text in --text-field and its second in this field (a row without it is "
                                          "bad). Without this option, classify reads a row that has a "
                                          f"'{PAIR_FIELD}' field as a pair (the transformers pipeline's convention); "
                                          "text arguments are always separate texts."),
    ] + _run_options()[4:] + [
        click.option("--truncate/--no-truncate", default=True, show_default=True,
                     help="Cut texts longer than the model takes; --no-truncate: such a text is an error "
                          "(exit 2; with --engine ray a failed row). ner cuts nothing: it runs a long "
                          "text in overlapping windows (unless --stride none)."),
        click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                     help="ray: run on a Ray cluster (onnxport[ray]); INPUT is Parquet/JSONL files, dirs or globs, "
                          "-o OUT.parquet|OUT.jsonl a directory of part files (docs/scale.md)."),
        click.option("--address", help="With --engine ray: the cluster (auto, ray://HEAD:10001) "
                                       "[default: a local Ray with this machine's CPUs]."),
        click.option("--actors", type=click.IntRange(min=1),
                     help="With --engine ray: actors, each loading the model once "
                          "[default: the CPUs / --cpus-per-actor]."),
        click.option("--cpus-per-actor", type=click.IntRange(min=1), default=1, show_default=True,
                     help="With --engine ray: CPUs (and onnxruntime threads) per actor."),
    ]
    return _apply(command, options)


def _run_pipeline(method: str, artifact, inputs, output, text_field, pair_field, id_field, skip_bad, batch_size,
                  max_batch_tokens, model_kind, providers, threads, backend, truncate, engine, address, actors,
                  cpus_per_actor, pair_text: str | None = None, **method_options) -> None:
    from .textio import Row, check_output, read_rows, write_results

    _check_pair_field(method, pair_field, text_field, engine)
    if pair_text is not None:
        _check_pair_text(inputs, pair_field, engine)
    if engine == "ray":
        pairs = {"pair_column": pair_field} if method == "classify" else {}
        return _run_on_ray(method, artifact, inputs, output, text_field=text_field, skip_bad=skip_bad,
                           batch_size=batch_size, max_batch_tokens=max_batch_tokens, model=model_kind,
                           providers=providers, threads=threads,
                           backend=backend, truncate=truncate, address=address, actors=actors,
                           cpus_per_actor=cpus_per_actor, **pairs, **method_options)
    ray_only = [flag for flag, value in (("--address", address), ("--actors", actors)) if value is not None]
    if cpus_per_actor != 1:
        ray_only.append("--cpus-per-actor")
    if ray_only:
        raise click.UsageError(f"{', '.join(ray_only)} go{'es' if len(ray_only) == 1 else ''} with --engine ray")
    check_output(output)
    if pair_text is not None:
        rows = [Row(id=0, text=inputs[0], line=1, pair=text_pair((inputs[0], pair_text))[1])]
    else:
        rows = read_rows(inputs, text_field=text_field, id_field=id_field, skip_bad=skip_bad,
                         pair_field=pair_field or (PAIR_FIELD if method == "classify" else None),
                         pair_optional=pair_field is None,
                         warn=lambda message: console.print(f"[yellow]warning:[/] {escape(message)}"))
    pipeline = onnxport.load(artifact, model=model_kind, providers=providers.split(",") if providers else None,
                             threads=threads, backend=backend, truncate=truncate, max_batch_tokens=max_batch_tokens)
    # load() names the onnx file it picked in its own notice; say the rest once.
    console.print(f"[dim]{'' if backend == 'onnx' else 'the PyTorch source, '}{_count_rows(rows)}[/]")
    if method == "classify" and len(inputs) == 2 and not any(Path(arg).exists() for arg in inputs):
        # Two arguments are two texts; a user meaning a premise and its hypothesis must hear it.
        console.print("[dim]two separate texts; to classify them as one sentence pair, pass the second with "
                      "--pair[/]")
    run = getattr(pipeline, method, None)
    if run is None:
        raise InputError(f"{artifact} is a {pipeline.artifact.task.value} artifact; `onnxport {_COMMANDS[method]}` "
                         f"needs {_TASKS[method]}")
    texts = [row.item for row in rows]  # a text, or a (first, second) pair
    chunk = max(batch_size * 8, 256)
    results: list = []
    with _progress(len(texts) > chunk) as progress:
        task = progress.add_task(method, total=len(texts)) if progress else None
        for start in range(0, len(texts), chunk):
            part = _run_items(run, texts[start:start + chunk], batch_size=batch_size, **method_options)
            results.extend(_as_records(method, part))
            if progress:
                progress.update(task, advance=len(part))
    write_results(rows, results, output)


def _check_pair_field(method: str, pair_field: str | None, text_field: str, engine: str) -> None:
    if pair_field is None:
        return
    if method != "classify":
        raise click.UsageError(f"--pair-field is for `onnxport classify`; `onnxport {_COMMANDS[method]}` takes single "
                               "texts: drop --pair-field")
    if pair_field == text_field:
        raise click.UsageError(f"--pair-field and --text-field are both {pair_field!r}; name the field of the "
                               "pair's second text")


def _check_pair_text(inputs, pair_field: str | None, engine: str) -> None:
    """--pair completes one text argument into a pair; anything else is a usage error."""
    from .textio import INPUT_SUFFIXES

    if pair_field is not None or engine == "ray":
        raise click.UsageError("--pair classifies one pair given on the command line; drop it to read pairs from a "
                               "file (--pair-field) or to run on Ray")
    if len(inputs) != 1 or inputs[0] == "-" or (Path(inputs[0]).suffix.lower() in INPUT_SUFFIXES
                                                 and Path(inputs[0]).exists()):
        raise click.UsageError(f"--pair is the second text of one pair: give its first text as the only INPUT, e.g. "
                               f"onnxport classify ARTIFACT \"A man plays a guitar.\" --pair \"Someone makes "
                               f"music.\" (got {len(inputs)} INPUT arguments); for many pairs use a file and "
                               "--pair-field")


def _count_rows(rows) -> str:
    pairs = sum(row.pair is not None for row in rows)
    texts = len(rows) - pairs
    # "3 texts", "2 pairs", "3 texts and 2 pairs" ("0 texts" for an empty input)
    parts = [f"{n} {word}{'' if n == 1 else 's'}" for n, word in ((texts, "text"), (pairs, "pair"))
             if n or (word == "text" and not pairs)]
    return " and ".join(parts)


def _run_items(run, items: list, **options) -> list:
    """`run` over texts and (first, second) pairs: a pipeline takes one kind per call, so
    each kind runs on its own and the results go back in input order."""
    results: list = [None] * len(items)
    for pairs in (False, True):
        indices = [i for i, item in enumerate(items) if isinstance(item, tuple) == pairs]
        if indices:
            for index, result in zip(indices, run([items[i] for i in indices], **options)):
                results[index] = result
    return results


def _run_on_ray(method: str, artifact, inputs, output, *, text_field, skip_bad, batch_size, max_batch_tokens, model,
                providers, threads, backend, truncate, address, actors, cpus_per_actor, **method_options) -> None:
    """`--engine ray`: the same verb over files on a Ray cluster (onnxport.scale.run). Bad rows
    are kept, with an `error` value; they make the exit code 1 unless --skip-bad."""
    command = _COMMANDS[method]
    if backend != "onnx":
        raise click.UsageError("--engine ray runs the ONNX artifact; drop --backend torch")
    if threads is not None:
        raise click.UsageError("with --engine ray, each actor runs --cpus-per-actor threads; drop --threads")
    if not inputs or inputs == ("-",):
        raise click.UsageError(f"--engine ray reads files: onnxport {command} ARTIFACT INPUT... -o OUTPUT, where "
                               "INPUT is .parquet or .jsonl files, directories or globs")
    if output is None:
        raise click.UsageError("--engine ray writes files: give -o OUT.parquet or -o OUT.jsonl")
    from .. import scale

    summary = scale.run(list(inputs), output, artifact, address=address, actors=actors, cpus_per_actor=cpus_per_actor,
                        task_fn=command, text_column=text_field, model=model, batch_size=batch_size,
                        max_batch_tokens=max_batch_tokens, truncate=truncate, providers=providers.split(",") if providers else None, **method_options)
    console.print(f"[green]done[/]: {escape(summary.line())} ({summary.actors} actor"
                  f"{'s' if summary.actors != 1 else ''} × {summary.cpus_per_actor} CPU)")
    if summary.failed:
        message = (f"{summary.failed} of {summary.rows} rows failed; each has its reason in the "
                   f"'{scale.ERROR_COLUMN}' column and an empty result")
        if not skip_bad:
            _fail(f"{message}; fix them, or pass --skip-bad to accept a run with bad rows", 1)
        console.print(f"[yellow]warning:[/] {escape(message)} (--skip-bad)")


_COMMANDS = {"embed": "embed", "extract": "ner", "classify": "classify"}
_TASKS = {"embed": "a sentence-embedding or feature-extraction artifact",
          "extract": "a token-classification artifact", "classify": "a sequence-classification artifact"}


def _as_records(method: str, part):
    if method == "embed":  # dense vectors, or a sparse-embedding's (indices, values)
        return [{"indices": vector[0], "values": vector[1]} if isinstance(vector, tuple) else vector
                for vector in part]
    key = {"extract": "entities", "classify": "labels"}[method]
    return [{key: value} for value in part]


def _progress(wanted: bool):
    import contextlib

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    if not wanted or not console.is_terminal:
        return contextlib.nullcontext(None)
    return Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=console, transient=True)


def _steps(started: float | None = None):
    """This command's `progress` callback (`render.steps`: a live bar on a terminal, a line per
    step elsewhere); one per command, shown until the command ends."""
    ctx = click.get_current_context()
    if "onnxport.steps" not in ctx.meta:
        ctx.meta["onnxport.steps"] = ctx.with_resource(render.steps(started))
    return ctx.meta["onnxport.steps"]


@main.command()
@pipeline_options
@click.option("--prompt-name", help="Put this prompt of the artifact before every text (its prompts come from the "
                                    "sentence-transformers folder, e.g. query or document) [default: its default "
                                    "prompt, if it has one].")
@click.option("--dimensions", type=click.IntRange(min=1),
              help="Keep the first N values of each vector, renormalized (Matryoshka models).")
def embed(artifact, inputs, prompt_name, dimensions, **options):
    """Sentence embeddings for texts (arguments, a file, or stdin): vectors, or a sparse
    (SPLADE) artifact's indices and values.

    \b
    Example:
      onnxport embed out/minilm "first text" "second text"
      onnxport embed out/e5 queries.jsonl --prompt-name query --dimensions 256 -o vectors.npy
    """
    extra = {k: v for k, v in (("prompt_name", prompt_name), ("dimensions", dimensions)) if v is not None}
    _run_pipeline("embed", artifact, inputs, **extra, **options)


def _stride(ctx, param, value):
    if value is None or value == "auto":
        return "auto"
    if value == "none":
        return None
    try:
        stride = int(value)
    except ValueError:
        stride = -1
    if stride < 0:
        raise click.BadParameter(f"{value!r} is not auto, none or a number of tokens (0 or more)")
    return stride


@main.command()
@pipeline_options
@click.option("--aggregation", type=click.Choice(["simple", "first", "max", "average"]), default="simple",
              show_default=True, help="How token labels become word and entity labels.")
@click.option("--stride", callback=_stride, metavar="auto|none|N", default="auto", show_default=True,
              help="A text longer than the model's window runs in windows overlapping by N tokens "
                   "(auto: an eighth of the window; 0: side by side), as transformers' pipeline with "
                   "stride=N; none: one window, the rest cut (or refused with --no-truncate).")
def ner(artifact, inputs, aggregation, stride, **options):
    """Entities (label, text, start, end, score) for texts; a text longer than the model's
    window is run in overlapping windows, as transformers' token-classification pipeline
    does with `stride`."""
    _run_pipeline("extract", artifact, inputs, aggregation=aggregation, stride=stride, **options)


@main.command()
@pipeline_options
@click.option("--top-k", type=int, default=1, show_default=True, help="How many labels per text.")
@click.option("--pair", "pair_text", metavar="TEXT",
              help="Classify one sentence pair: INPUT is its first text, TEXT its second (two INPUT arguments "
                   "are two separate texts).")
def classify(artifact, inputs, top_k, pair_text, **options):
    """Labels with scores for texts, or for sentence pairs: one with --pair, many from a file
    (--pair-field).

    \b
    onnxport classify out/nli "A man plays a guitar." --pair "Someone makes music."
    """
    _run_pipeline("classify", artifact, inputs, top_k=top_k, pair_text=pair_text, **options)


def rerank_options(command):
    """rerank's options: the documents are read like the other verbs' texts."""
    return _apply(command, _run_options(".jsonl or .parquet") + [
        click.option("-q", "--query", required=True, help="The query the documents are ranked for."),
        click.option("--top-k", type=click.IntRange(min=1), help="Keep the best K documents [default: all]."),
        click.option("--truncate/--no-truncate", default=True, show_default=True,
                     help="Cut a (query, document) pair longer than the model takes, the longer text first; "
                          "--no-truncate: such a pair is an error (exit 2)."),
    ])


@main.command()
@rerank_options
def rerank(artifact, inputs, output, text_field, id_field, skip_bad, batch_size, max_batch_tokens, model_kind,
           providers, threads, backend, truncate, query, top_k):
    """Rank documents (arguments, a file, or stdin) by relevance to --query with a text-ranking
    (cross-encoder) artifact: one JSON line per document, best first, with its rank, score and
    index in the input.

    \b
    onnxport rerank out/reranker -q "capital of France" docs.jsonl --top-k 3
    """
    from .textio import check_output, read_rows, write_results

    check_output(output)
    if output is not None and output.suffix.lower() == ".npy":
        raise click.UsageError("rerank writes .jsonl or .parquet (a ranked list, not a matrix); pick one of those")
    if not query.strip():
        raise click.UsageError("--query is empty; give the text to rank the documents for")
    rows = read_rows(inputs, text_field=text_field, id_field=id_field, skip_bad=skip_bad,
                     warn=lambda message: console.print(f"[yellow]warning:[/] {escape(message)}"))
    pipeline = onnxport.load(artifact, model=model_kind, providers=providers.split(",") if providers else None,
                             threads=threads, backend=backend, truncate=truncate, max_batch_tokens=max_batch_tokens)
    ranked = pipeline.rerank(query, [row.text for row in rows], top_k=top_k, return_documents=False,
                             batch_size=batch_size)
    console.print(f"[dim]{len(rows)} document{'s' if len(rows) != 1 else ''} ranked for the query[/]")
    write_results([rows[r["index"]] for r in ranked],
                  [{"rank": rank, "score": r["score"], "index": r["index"]} for rank, r in enumerate(ranked, 1)],
                  output)


def _bench_batch_sizes(ctx, param, value):
    from .bench import parse_batch_sizes

    if value is None:
        return None
    try:
        return parse_batch_sizes(value)
    except InputError as error:
        raise click.BadParameter(str(error)) from None


def _bench_against(ctx, param, value):
    from .bench import parse_against

    try:
        return parse_against(value)
    except InputError as error:
        raise click.BadParameter(str(error)) from None


@main.command()
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--texts", type=click.Path(path_type=Path),
              help="Texts file (one per line or JSONL) [default: built-in length mix, seeded].")
@click.option("--batch-sizes", callback=_bench_batch_sizes, metavar="1,8,32",
              help="Comma-separated batch sizes [default: 1,8,32; with --quick 1,32].")
@click.option("--against", multiple=True, callback=_bench_against, metavar="NAME[,NAME...]",
              help="Also measure, each in its own process: sentence-transformers, st-onnx, st-onnx-int8, "
                   "st-openvino, fastembed (embedding artifacts; all but the first run in venvs built once "
                   "from PyPI, docs/bench.md).")
@click.option("-o", "--out", "report_dir", type=click.Path(path_type=Path), default=Path("bench-report"),
              show_default=True, help="Directory for report.md, report.json and chart.png.")
@click.option("--quick", is_flag=True, help="40 texts, 2 timed passes, batch sizes 1,32 (docs/bench.md: timings).")
@click.option("--threads", type=click.IntRange(min=1), help="Threads for every contender [default: physical cores].")
def bench(artifact, texts, batch_sizes, against, report_dir, quick, threads):
    """Measure the artifact's model files against PyTorch: speed, latency, memory, quality."""
    from . import bench as benchmark

    with benchmark.live_progress(console) as progress:
        report = benchmark.bench(artifact, report_dir=report_dir, texts_file=texts, batch_sizes=batch_sizes,
                                 against=against, quick=quick, threads=threads, progress=progress)
    benchmark.print_report(report, stdout)
    console.print(f"{'[yellow]partial[/] report' if report['partial'] else 'report'} in {report['seconds']:.0f}s: "
                  + ", ".join(str(path) for path in report["files"].values()))
    if report["partial"]:
        sys.exit(130)  # interrupted (Ctrl-C), as a shell reports it


@main.command()
@click.argument("artifacts", nargs=-1, required=True, metavar="ARTIFACT [ARTIFACT ...]")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option("--model", "model_kind", type=click.Choice(["auto", "fp32", "opt", "int8"]), default="auto",
              show_default=True, help="Model file of each artifact (auto: verified int8, else opt, else fp32).")
@click.option("--api-key", envvar="ONNXPORT_API_KEY", help="Require 'Authorization: Bearer KEY' [env: ONNXPORT_API_KEY].")
@click.option("--max-batch-tokens", type=click.IntRange(min=1), default=16384, show_default=True,
              help="Padded tokens taken from the queue together (longest × items).")
@click.option("--run-tokens", type=click.IntRange(min=1), help="Padded tokens per model run [default: the whole "
              "batch on a GPU, 1024 on a CPU, where smaller runs are faster per text].")
@click.option("--max-batch-requests", type=click.IntRange(min=1), default=64, show_default=True,
              help="Requests merged into one model run (1: no batching across requests).")
@click.option("--max-client-batch-size", type=click.IntRange(min=1), default=256, show_default=True,
              help="Items per request; more is a 413.")
@click.option("--max-queue", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Items waiting per model; more is a 429 with Retry-After.")
@click.option("--payload-limit", default="2MB", show_default=True, help="Largest request body (e.g. 2MB, 512KiB).")
@click.option("--threads", type=click.IntRange(min=1), help="onnxruntime threads per model [default: the CPUs this "
              "process may use, after affinity and cgroup quota].")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]), default="info",
              show_default=True)
def serve(artifacts, host, port, model_kind, api_key, max_batch_tokens, run_tokens, max_batch_requests,
          max_client_batch_size, max_queue, payload_limit, threads, log_level):
    """Serve artifacts over HTTP: OpenAI /v1/embeddings, /embed, /rerank, /classify, /ner, /tokenize
    (docs/serve.md)."""
    from ..serve import create_app, require_serve_extra

    require_serve_extra()
    from ..serve.running import run_server

    app = create_app(list(artifacts), model=model_kind, api_key=api_key, threads=threads,
                     max_batch_tokens=max_batch_tokens, max_batch_requests=max_batch_requests,
                     max_client_batch_size=max_client_batch_size, max_queue=max_queue, payload_limit=payload_limit,
                     run_tokens=run_tokens)
    run_server(app, host=host, port=port, log_level=log_level)


main.add_command(qa)
main.add_command(fill_mask)


if __name__ == "__main__":  # pragma: no cover
    main()
