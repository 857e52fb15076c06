"""The verified model.onnx, run by OpenVINO instead of onnxruntime (the `openvino` extra).

OpenVINO reads the ONNX file itself. Only model.onnx: the fused file's operators and the
int8 file's are onnxruntime's own. Two precisions:

* f32: the same arithmetic up to summation order, judged like model.onnx (against PyTorch,
  or against onnxruntime on model.onnx);
* bf16: matrix products in bfloat16 on CPUs that have it (AMX or AVX512-BF16; OpenVINO's
  OPTIMIZATION_CAPABILITIES lists BF16), judged like an int8 file, by quality against
  model.onnx. Asked for bf16 on another CPU, OpenVINO quietly compiles f32; this refuses
  instead, so a "bf16" verdict or figure is always bf16.

`OpenVinoModel` has OnnxModel's interface (input_types, output_names, run), so the pipelines,
verify and the quality checks run it unchanged.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError, MissingDependency
from .session import default_threads, typed_feed

ENGINE_NAMES = ("onnxruntime", "openvino")
PRECISIONS = ("f32", "bf16")
_ONNX_NAMES = {"i64": "tensor(int64)", "i32": "tensor(int32)", "f32": "tensor(float)"}


def check_engine(engine: str | None, precision: str | None) -> None:
    """The engine and precision arguments of load and verify (engine None: onnxruntime, or
    whatever model="auto" picks)."""
    if engine is not None and engine not in ENGINE_NAMES:
        raise InputError(f"engine must be 'onnxruntime' or 'openvino', not {engine!r}")
    if precision is not None and engine != "openvino":
        raise InputError("precision goes with engine='openvino'; with onnxruntime, pick the file: model='int8', "
                         "'fp16', 'opt' or 'fp32'")


def openvino_version() -> str:
    import openvino

    return openvino.get_version()


def bf16_capable(core=None) -> bool:
    """Whether OpenVINO runs bf16 on this CPU."""
    core = core or _core()
    return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def _core():
    try:
        import openvino
    except ImportError:
        raise MissingDependency("OpenVINO is not installed: pip install \"onnxport[openvino]\"") from None
    return openvino.Core()


class OpenVinoModel:
    """An OpenVINO compiled model on the CPU that feeds arrays as the graph declares them."""

    on_cuda = False

    def __init__(self, path: str | Path, *, precision: str = "f32", threads: int | None = None):
        if precision not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        self.path, self.precision = Path(path), precision
        core = _core()
        if precision == "bf16" and not bf16_capable(core):
            capabilities = ", ".join(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
            raise InputError(f"this CPU has no bf16 for OpenVINO (it can: {capabilities}); bf16 needs AMX or "
                             "AVX512-BF16. Use precision f32, or onnxruntime's int8 file")
        model = core.read_model(str(self.path))
        self.compiled = core.compile_model(model, "CPU", {
            "INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": threads or default_threads(),
            "PERFORMANCE_HINT": "LATENCY"})  # one request at a time, all threads on it
        compiled_precision = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        if compiled_precision != precision:  # never report a precision that did not run
            raise InputError(f"OpenVINO compiled {self.path.name} in {compiled_precision}, not {precision}")
        self.input_types = {port.get_any_name(): _ONNX_NAMES.get(port.get_element_type().get_type_name(), "?")
                            for port in self.compiled.inputs}
        self.output_names = [port.get_any_name() for port in self.compiled.outputs]
        self._request = self.compiled.create_infer_request()
        self._lock = threading.Lock()  # one infer request: one run at a time

    def describe(self) -> str:
        return f"OpenVINO {openvino_version().split('-')[0]} CPU, {self.precision}"

    def feed(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return typed_feed(self.input_types, arrays)

    def run(self, arrays: dict[str, np.ndarray], outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """The graph's outputs (only `outputs` when given), as arrays of their own: OpenVINO
        copies them out of its tensors, which the next run overwrites."""
        names = list(outputs) if outputs else self.output_names
        with self._lock:
            results = self._request.infer(self.feed(arrays), share_outputs=False)
            return {name: np.asarray(results[name]) for name in names}
