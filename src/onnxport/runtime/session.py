"""An onnxruntime session over one ONNX file: providers with a loud CPU fallback, threads,
feeds cast to the dtypes the graph declares, io binding on CUDA. No torch.

`OnnxModel` runs the arrays `tokenization.TextEncoder` makes; pipelines, checks, graph
tools and benchmarks all build on these two.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from ..core.cpus import available_cpus
from ..core.messages import first_line
from ..errors import ArtifactError, InputError

_ORT_INT_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}


def default_threads() -> int:
    """Physical cores when we can tell, capped by the CPUs this process may use (affinity,
    cgroup quota); else those CPUs."""
    allowed = available_cpus()
    try:
        import psutil  # optional

        cores = psutil.cpu_count(logical=False)
        if cores:
            return min(cores, allowed)
    except ImportError:
        pass
    return allowed


# Short names users may pass, and what to install when a provider is missing.
PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "directml": "DmlExecutionProvider",
}
PROVIDER_PACKAGES = {
    "CUDAExecutionProvider": "onnxruntime-gpu (and CUDA/cuDNN)",
    "TensorrtExecutionProvider": "onnxruntime-gpu with TensorRT",
    "CoreMLExecutionProvider": "onnxruntime on macOS",
    "DmlExecutionProvider": "onnxruntime-directml on Windows",
}


def resolve_providers(requested: Sequence[str] | None) -> list[str]:
    """Requested providers that this onnxruntime has, CPU last; one warning for the missing ones."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    wanted = [PROVIDER_ALIASES.get(p.lower(), p) for p in (requested or ["CPUExecutionProvider"])]
    missing = [p for p in wanted if p not in available]
    if missing:
        hints = "; ".join(f"{p}: install {PROVIDER_PACKAGES.get(p, 'an onnxruntime build that has it')}"
                          for p in missing)
        warnings.warn(f"{', '.join(missing)} not available in this onnxruntime ({ort.__version__}, has "
                      f"{', '.join(available)}); falling back to CPU. {hints}", RuntimeWarning, stacklevel=3)
    chosen = [p for p in wanted if p in available and p != "CPUExecutionProvider"]
    return chosen + ["CPUExecutionProvider"]


def create_session(path: str | Path, *, providers: Sequence[str] | None = None, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if not Path(path).is_file():
        raise ArtifactError(f"{path} does not exist or is not a file; re-export the artifact")
    try:
        return ort.InferenceSession(str(path), options, providers=resolve_providers(providers))
    except Exception as error:  # onnxruntime raises its own untyped exceptions
        damage = _damage(error)
        if damage:
            raise ArtifactError.damaged(path, damage) from None
        raise ArtifactError(f"onnxruntime cannot load {path}: {first_line(error)}") from None


def _damage(error: Exception) -> str | None:
    """Why onnxruntime's error means the file itself is broken, or None. onnxruntime's
    exceptions are untyped pybind classes (InvalidProtobuf, InvalidArgument, Fail, ...)
    with the status in the message, so both the class name and the text are checked."""
    text = str(error)
    if type(error).__name__ == "InvalidProtobuf" or "Protobuf parsing failed" in text:
        return "protobuf parsing failed: it is cut short or another format"
    if "No graph was found" in text:
        return "it holds no graph"
    return None


def graph_feed(session, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The session's inputs from the tokenizer's arrays, cast to the int type each one declares."""
    return typed_feed({value.name: value.type for value in session.get_inputs()}, arrays)


def typed_feed(input_types: dict[str, str], arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The graph's inputs (name: ONNX type, 'tensor(int64)') from the tokenizer's arrays, each
    cast to the int type it declares; shared by onnxruntime and OpenVINO runners."""
    feed = {}
    for name, onnx_type in input_types.items():
        if name not in arrays:
            raise InputError(f"the graph needs input '{name}', which the tokenizer did not produce")
        dtype = _ORT_INT_TYPES.get(onnx_type)
        feed[name] = arrays[name].astype(dtype, copy=False) if dtype else arrays[name]
    return feed


class OnnxModel:
    """An onnxruntime session that feeds arrays as the graph declares them."""

    def __init__(self, path: str | Path, *, providers: Sequence[str] | None = None, threads: int | None = None):
        self.path = Path(path)
        self.session = create_session(path, providers=providers, threads=threads)
        self.input_types = {i.name: i.type for i in self.session.get_inputs()}
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.on_cuda = "CUDAExecutionProvider" in self.session.get_providers()

    def feed(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return typed_feed(self.input_types, arrays)

    def run(self, arrays: dict[str, np.ndarray], outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """The graph's outputs (only `outputs` when given: the others are not copied out)."""
        names = list(outputs) if outputs else self.output_names
        if self.on_cuda:
            return self._run_with_io_binding(self.feed(arrays), names)
        results = self.session.run(names, self.feed(arrays))
        return dict(zip(names, results))

    def _run_with_io_binding(self, feed: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
        # From onnxruntime's IOBinding docs: copy inputs to the GPU once, let outputs come
        # back to host memory, and avoid the extra copies plain run() makes. Not exercised
        # on CPU-only machines (see README).
        import onnxruntime as ort

        binding = self.session.io_binding()
        for name, array in feed.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array, "cuda", 0))
        for name in names:
            binding.bind_output(name, "cpu")
        self.session.run_with_iobinding(binding)
        return dict(zip(names, binding.copy_outputs_to_cpu()))
