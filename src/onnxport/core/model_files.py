"""The model files an artifact can hold, in one table: kind, file name, how it is judged.

    kind        file              made by                         judged by
    fp32        model.onnx        export                          atol vs PyTorch
    opt         model.opt.onnx    optimize --level fused          atol vs PyTorch (else model.onnx)
    opt-approx  model.opt.onnx    optimize --level fused-gelu-approx   quality vs model.onnx
    fp16        model.fp16.onnx   optimize --level fp16           quality vs model.onnx
    int8        model.int8.onnx   quantize                        quality vs model.onnx

`model="auto"` prefers a verified int8 file, then a verified opt file, then model.onnx.
"""

from __future__ import annotations

MODEL_FILE = "model.onnx"
OPT_FILE = "model.opt.onnx"
FP16_FILE = "model.fp16.onnx"
INT8_FILE = "model.int8.onnx"

# What users pass as --model / model=: a short name per file.
MODEL_CHOICES = {"fp32": MODEL_FILE, "opt": OPT_FILE, "int8": INT8_FILE, "fp16": FP16_FILE}
# The order `model="auto"` tries, each only when its verification passed.
AUTO_PREFERENCE = ("int8", "opt")
# Kinds judged by quality metrics against the fp32 model.onnx instead of an absolute tolerance.
QUALITY_KINDS = frozenset({"int8", "fp16", "opt-approx"})
