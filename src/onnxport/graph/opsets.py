"""Which ONNX opset and IR version a given onnxruntime release can run.

The table is onnxruntime's published compatibility matrix ("ONNX Runtime compatibility",
onnxruntime.ai/docs/reference/compatibility.html): each release maps to the newest ONNX
release it implements, and that ONNX release to its IR version and default-domain opset
(onnx's own version table). Releases newer than the table are probed directly when they
are the installed runtime.
"""

from __future__ import annotations

import functools

from ..errors import InputError

# onnxruntime minor release -> newest ONNX release it implements.
_ORT_TO_ONNX = {
    (1, 0): "1.6", (1, 1): "1.6", (1, 2): "1.6", (1, 3): "1.7", (1, 4): "1.7",
    (1, 5): "1.7", (1, 6): "1.8", (1, 7): "1.8", (1, 8): "1.9", (1, 9): "1.10",
    (1, 10): "1.10", (1, 11): "1.11", (1, 12): "1.12", (1, 13): "1.12",
    (1, 14): "1.13", (1, 15): "1.14", (1, 16): "1.14", (1, 17): "1.15",
    (1, 18): "1.16", (1, 19): "1.16", (1, 20): "1.16", (1, 21): "1.17",
    (1, 22): "1.18",
}

# ONNX release -> (IR version, ai.onnx opset), from onnx.helper.VERSION_TABLE.
_ONNX_RELEASES = {
    "1.6": (6, 11), "1.7": (7, 12), "1.8": (7, 13), "1.9": (7, 14), "1.10": (8, 15),
    "1.11": (8, 16), "1.12": (8, 17), "1.13": (8, 18), "1.14": (9, 19), "1.15": (9, 20),
    "1.16": (10, 21), "1.17": (10, 22), "1.18": (11, 23),
}

# Opsets below this lack ops every encoder export needs (e.g. opset 13's Unsqueeze-as-input
# and Split changes, which the exporters rely on).
MIN_SUPPORTED_OPSET = 14


def parse_version(text: str) -> tuple[int, int]:
    """'1.17' or '1.17.3' -> (1, 17); anything else is an InputError."""
    parts = text.strip().split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        raise InputError(f"'{text}' is not an onnxruntime version; write it as MAJOR.MINOR, e.g. 1.17") from None


def capability(ort_version: str) -> tuple[int, int]:
    """(max IR version, max ai.onnx opset) the given onnxruntime release runs."""
    key = parse_version(ort_version)
    if key in _ORT_TO_ONNX:
        return _ONNX_RELEASES[_ORT_TO_ONNX[key]]
    newest = max(_ORT_TO_ONNX)
    if key > newest:
        import onnxruntime

        if parse_version(onnxruntime.__version__) == key:
            return probe_installed_capability()
        # Newer than our table and not installed: the table's newest row is a safe floor.
        return _ONNX_RELEASES[_ORT_TO_ONNX[newest]]
    raise InputError(
        f"onnxruntime {ort_version} is older than 1.0 and not supported; target 1.0 or newer"
    )


@functools.lru_cache(maxsize=1)
def probe_installed_capability() -> tuple[int, int]:
    """Ask the installed onnxruntime which IR version and opset it accepts, by loading
    one-node models (a few milliseconds)."""
    import onnx
    import onnxruntime
    from onnx import TensorProto, helper

    def loads(ir_version: int, opset: int) -> bool:
        node = helper.make_node("Identity", ["x"], ["y"])
        graph = helper.make_graph(
            [node], "probe",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = ir_version
        try:
            onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            return True
        except Exception:
            return False

    floor_ir, floor_opset = _ONNX_RELEASES[_ORT_TO_ONNX[max(_ORT_TO_ONNX)]]
    opset = floor_opset
    while opset < onnx.defs.onnx_opset_version() and loads(floor_ir, opset + 1):
        opset += 1
    ir_version = floor_ir
    while ir_version < onnx.IR_VERSION and loads(ir_version + 1, floor_opset):
        ir_version += 1
    return ir_version, opset


def installed_ort_version() -> str:
    import onnxruntime

    major, minor = parse_version(onnxruntime.__version__)
    return f"{major}.{minor}"


def min_ort_for(ir_version: int, opset: int) -> str:
    """The oldest onnxruntime release that runs a model of this IR version and opset."""
    for key in sorted(_ORT_TO_ONNX):
        max_ir, max_opset = _ONNX_RELEASES[_ORT_TO_ONNX[key]]
        if ir_version <= max_ir and opset <= max_opset:
            return f"{key[0]}.{key[1]}"
    return f"newer than {'.'.join(map(str, max(_ORT_TO_ONNX)))} (opset {opset}, IR {ir_version})"


def min_ir_for_opset(opset: int) -> int:
    """The lowest IR version that may declare this opset (older runtimes accept it)."""
    for release in sorted(_ONNX_RELEASES, key=lambda r: _ONNX_RELEASES[r][1]):
        ir_version, release_opset = _ONNX_RELEASES[release]
        if release_opset >= opset:
            return ir_version
    return max(ir for ir, _ in _ONNX_RELEASES.values())
