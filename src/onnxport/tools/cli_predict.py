"""`onnxport qa` and `onnxport fill-mask`: answers from a question-answering artifact and the
likeliest words for mask tokens from a fill-mask artifact. Thin commands over
`QuestionAnswerer.answer` and `FillMask.fill`; `tools.cli` registers them."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

import onnxport

from ..errors import InputError
from .cli_options import apply_options, run_options
from .render import console
from .textio import Row, check_output, read_rows, write_results


@click.command()
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("-q", "--question", required=True, help="The question to answer.")
@click.option("--context-file", type=click.Path(path_type=Path),
              help="A UTF-8 text file holding the context the answer is found in.")
@click.option("--context", "context_text", help="The context itself, instead of --context-file.")
@click.option("--top-k", type=click.IntRange(min=1), default=1, show_default=True, help="How many answers.")
@click.option("--max-answer-length", type=click.IntRange(min=1), default=30, show_default=True,
              help="Longest answer, in tokens.")
@click.option("--doc-stride", type=click.IntRange(min=0),
              help="Tokens consecutive windows of a long context share [default: min(window / 2, 128)].")
@click.option("--max-seq-len", type=click.IntRange(min=1),
              help="Tokens per window: question, context piece and special tokens [default: min(model's, 384)].")
@click.option("--handle-impossible-answer", is_flag=True,
              help="Let 'no answer' (an empty answer at 0..0) win when the model scores it highest.")
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Write .jsonl or .parquet [default: JSON Lines on stdout].")
@click.option("--model", "model_kind", type=click.Choice(["auto", "fp32", "opt", "int8", "fp16"]), default="auto",
              show_default=True, help="Which model file of the artifact.")
@click.option("--providers", help="Comma-separated onnxruntime providers, e.g. cuda,cpu.")
@click.option("--threads", type=int, help="Intra-op threads [default: physical cores].")
def qa(artifact, question, context_file, context_text, top_k, max_answer_length, doc_stride, max_seq_len,
       handle_impossible_answer, output, model_kind, providers, threads):
    """Answer --question from a context (a span of it, with character offsets), with a
    question-answering artifact. A context longer than the model's window is read in
    overlapping windows, as transformers' question-answering pipeline reads it. One JSON line
    per answer, best first: rank, answer, start, end, score.

    \b
    onnxport qa out/squad -q "Where is the Eiffel Tower?" --context-file paris.txt
    """
    if (context_file is None) == (context_text is None):
        raise click.UsageError("give the context with --context-file FILE (or --context TEXT), exactly one of them")
    check_output(output)
    if output is not None and output.suffix.lower() == ".npy":
        raise click.UsageError("qa writes .jsonl or .parquet (answers, not a matrix); pick one of those")
    context = context_text if context_file is None else _read_context(context_file)
    pipeline = onnxport.load(artifact, model=model_kind, providers=providers.split(",") if providers else None,
                             threads=threads)
    if not hasattr(type(pipeline), "answer"):
        raise InputError(f"{artifact} is a {pipeline.artifact.task.value} artifact; `onnxport qa` needs a "
                         "question-answering artifact")
    found = pipeline.answer(question, context, top_k=top_k, max_answer_length=max_answer_length,
                            doc_stride=doc_stride, max_seq_len=max_seq_len,
                            handle_impossible_answer=handle_impossible_answer)
    answers = found if isinstance(found, list) else [found]
    console.print(f"[dim]{len(answers)} answer{'s' if len(answers) != 1 else ''} from a context of "
                  f"{len(context)} characters[/]")
    rows = [Row(id=0, text=question, line=1)] * len(answers)  # every answer is to the one question
    write_results(rows, [{"rank": rank, **answer} for rank, answer in enumerate(answers, 1)], output)


def _read_context(path: Path) -> str:
    if not path.is_file():
        raise InputError(f"--context-file {path} is not a file; give the text file the answer is to be found in")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"--context-file {path} is not UTF-8 text; convert it (e.g. iconv -t UTF-8)") from None


def _fill_options(command):
    return apply_options(command, run_options(".jsonl or .parquet") + [
        click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True,
                     help="How many tokens per mask."),
    ])


@click.command("fill-mask")
@_fill_options
def fill_mask(artifact, inputs, output, text_field, id_field, skip_bad, batch_size, max_batch_tokens, model_kind,
              providers, threads, backend, top_k):
    """The likeliest tokens for every mask token ([MASK], <mask>) in texts (arguments, a file,
    or stdin), with a fill-mask artifact, as transformers' fill-mask pipeline gives them. One
    JSON line per text: `masks`, a list per mask token of {score, token, token_str, sequence}.

    \b
    onnxport fill-mask out/bert "Paris is the [MASK] of France." --top-k 3
    """
    check_output(output)
    if output is not None and output.suffix.lower() == ".npy":
        raise click.UsageError("fill-mask writes .jsonl or .parquet (tokens, not a matrix); pick one of those")
    rows = read_rows(inputs, text_field=text_field, id_field=id_field, skip_bad=skip_bad,
                     warn=lambda message: console.print(f"[yellow]warning:[/] {escape(message)}"))
    pipeline = onnxport.load(artifact, model=model_kind, providers=providers.split(",") if providers else None,
                             threads=threads, backend=backend, max_batch_tokens=max_batch_tokens)
    if not hasattr(type(pipeline), "fill"):
        raise InputError(f"{artifact} is a {pipeline.artifact.task.value} artifact; `onnxport fill-mask` needs a "
                         "fill-mask artifact")
    results = pipeline.fill([row.text for row in rows], top_k=top_k, batch_size=batch_size)
    # one list per mask token, whether a text has one mask or several (a fixed shape per row)
    masks = [result if result and isinstance(result[0], list) else [result] for result in results]
    write_results(rows, [{"masks": per_mask} for per_mask in masks], output)
