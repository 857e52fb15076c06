"""Each contender as a small Python program, run in an interpreter of its own.

A script reads its settings from `args` (a dict the prelude parses from argv) and defines
`run(texts, batch_size)` (what is timed) and `outputs(texts)` (per text, a dict of output
name to a [1, ...] array, for quality); it may set `detail` (what it runs, as the library
reports it). The worker loop (workers.py) or the cold-start epilogue (cold_start.py) follows
it. Scripts for sentence-transformers' onnx and OpenVINO backends and for fastembed run in a
side environment (side_envs.py) with the versions those libraries need, so they import
nothing from onnxport.
"""

from __future__ import annotations

PRELUDE = """
import json, sys, time
started = time.perf_counter()
args = json.loads(sys.argv[1])
detail = None
"""

# onnxport's own files (backend onnx; model.onnx also on OpenVINO, `engine`) and PyTorch
# (backend torch, the module the exporter wrapped), through the same pipeline code.
# `outputs` imports the quality helpers only when asked, so they are not part of the cold start.
PIPELINE = """
if args["backend"] == "torch":
    import torch
    torch.set_num_threads(args["threads"])
import onnxport
if args["backend"] == "torch":
    pipeline = onnxport.load(args["artifact"], backend="torch")
    detail = f"torch {torch.__version__}"
else:
    pipeline = onnxport.load(args["artifact"], model=args["model"], threads=args["threads"],
                             providers=args["providers"], engine=args.get("engine", "onnxruntime"),
                             precision=args.get("precision"))
    describe = getattr(pipeline.runner, "describe", None)
    detail = f"{describe() if describe else 'onnxruntime'}, {pipeline.model_file}"
from onnxport.tools.workloads import run_task
run = lambda texts, batch_size: run_task(pipeline, texts, batch_size)

def outputs(texts):
    from onnxport.tools.bench.contenders import PipelineRunner
    return PipelineRunner(pipeline).outputs(texts)
"""

# sentence-transformers with one of its backends: torch, onnx, onnx-int8 or openvino. The
# onnx ones get the bench's thread count through onnxruntime's session options, OpenVINO
# through INFERENCE_NUM_THREADS, torch through set_num_threads.
SENTENCE_TRANSFORMERS = """
import os
import torch
torch.set_num_threads(args["threads"])
from sentence_transformers import SentenceTransformer
backend, source, work = args["backend"], args["source"], args.get("workdir")
# The onnx and OpenVINO backends export the source with optimum on the first load and save
# it in `work`, as sentence-transformers' warning asks users to; later loads (the cold
# start) read the saved files, as a user's would.
saved = bool(work) and os.path.exists(os.path.join(work, "modules.json"))
if backend == "torch":
    model = SentenceTransformer(source, device="cpu")
    detail = f"torch {torch.__version__}"
elif backend == "openvino":
    model = SentenceTransformer(work if saved else source, device="cpu", backend="openvino", local_files_only=True,
                                model_kwargs={"ov_config": {"INFERENCE_NUM_THREADS": args["threads"]}})
    if not saved:
        model.save_pretrained(work)
    # f32 on most CPUs; OpenVINO picks bf16 by itself where the CPU has AMX or AVX512-BF16.
    precision = model[0].auto_model.request.get_property("INFERENCE_PRECISION_HINT")
    detail = f"OpenVINO, inference precision {getattr(precision, 'get_type_name', lambda: precision)()}"
else:
    import onnxruntime as ort

    def onnx_model(folder, **extra):
        options = ort.SessionOptions()
        options.intra_op_num_threads = args["threads"]
        return SentenceTransformer(folder, device="cpu", backend="onnx", local_files_only=True,
                                   model_kwargs={"provider": "CPUExecutionProvider", "session_options": options,
                                                 **extra})

    if not saved:
        model = onnx_model(source)
        model.save_pretrained(work)
        if backend == "onnx-int8":
            # sentence-transformers' own recipe: dynamic int8 with its preset for this CPU.
            from sentence_transformers import export_dynamic_quantized_onnx_model
            export_dynamic_quantized_onnx_model(model, args["preset"], work)
    detail = "onnxruntime, onnx/model.onnx exported by optimum"
    if backend == "onnx-int8":
        name = sorted(n for n in os.listdir(os.path.join(work, "onnx")) if n.endswith(f"_{args['preset']}.onnx"))[0]
        model = onnx_model(work, file_name=f"onnx/{name}")
        detail = f"onnxruntime, onnx/{name} (preset {args['preset']})"
    elif saved:
        model = onnx_model(work)
run = lambda texts, batch_size: model.encode(texts, batch_size=batch_size, convert_to_numpy=True,
                                             show_progress_bar=False)
outputs = lambda texts: [{args["output"]: vector[None]} for vector in run(texts, 16)]
"""

# fastembed on the artifact's own model.onnx: its pooled output, so the graph is the one
# onnxport runs and what differs is fastembed's tokenizing, batching and session settings.
FASTEMBED = """
from fastembed import TextEmbedding
from fastembed.common.model_description import ModelSource, PoolingType
TextEmbedding.add_custom_model(model="onnxport/bench", pooling=PoolingType.DISABLED, normalization=False,
                               sources=ModelSource(hf="onnxport/bench"), dim=args["dim"],
                               model_file=args["model_file"], output_name=args["output"])
model = TextEmbedding("onnxport/bench", specific_model_path=args["artifact"], threads=args["threads"], cuda=False)
detail = f"onnxruntime, {args['model_file']}, truncation at {model.model.tokenizer.truncation['max_length']} tokens"
import numpy as np
run = lambda texts, batch_size: list(model.embed(texts, batch_size=batch_size))
outputs = lambda texts: [{args["output"]: np.asarray(vector)[None]} for vector in run(texts, 16)]
"""
