"""Reading and writing ONNX files: clear errors for broken files, atomic saves with
external data past protobuf's 2 GB limit."""

from __future__ import annotations

from pathlib import Path

from ..core.files import atomic_path
from ..errors import ArtifactError

# onnxruntime's fused transformer ops live in the com.microsoft domain (a standard
# ai.onnx Gelu, opset 20+, is not one of them).
FUSED_DOMAIN = "com.microsoft"
# Protobuf cannot serialize more than 2 GiB; above this the weights go to NAME.data.
EXTERNAL_DATA_THRESHOLD = 1_800_000_000


def load_onnx(path: Path):
    """onnx.load with user-facing errors for the usual ways a file is broken."""
    import onnx
    from google.protobuf.message import DecodeError

    if not path.exists():
        raise ArtifactError(f"{path} does not exist")
    if path.is_dir():
        raise ArtifactError(f"{path} is a directory, not an ONNX file; pass the .onnx file or the artifact directory")
    if path.stat().st_size == 0:
        raise ArtifactError.damaged(path, "the file is empty")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, RuntimeError, ValueError) as error:
        raise ArtifactError.damaged(path, f"{type(error).__name__}: it is cut short or another format") from None
    if not model.HasField("graph"):  # protobuf parses some junk (a few stray bytes) as an empty model
        raise ArtifactError.damaged(path, "it holds no graph")
    return model


def external_data_files(model, folder: Path) -> list[str]:
    from onnx.external_data_helper import uses_external_data

    names = []
    for tensor in model.graph.initializer:
        if uses_external_data(tensor):
            location = next((e.value for e in tensor.external_data if e.key == "location"), None)
            if location and location not in names:
                names.append(location)
    return names


def save_onnx(model, path: Path, *, external_data_threshold: int = EXTERNAL_DATA_THRESHOLD) -> list[Path]:
    """Save a ModelProto to `path` atomically (temp name, then rename), with its weights in
    `path.data` when they are too large for one protobuf. Returns the files written."""
    import onnx

    path = Path(path)
    weights = sum(len(t.raw_data) or t.ByteSize() for t in model.graph.initializer)
    external = weights > external_data_threshold
    data_name = path.name + ".data"
    with atomic_path(path) as temp:
        if external:
            # The data file name is recorded inside the model, so it must be the final name.
            onnx.save_model(model, str(temp), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=data_name, size_threshold=1024)
        else:
            onnx.save_model(model, str(temp))
    if not external and (path.parent / data_name).exists():
        (path.parent / data_name).unlink()
    return [path] + ([path.parent / data_name] if external else [])


def check_fits_artifact(art, name: str, model) -> None:
    """`Artifact.check_graph_io` for a loaded ModelProto: its real inputs (initializers are
    not inputs) and outputs must be the ones the artifact's task and tokenizer expect."""
    initializers = {tensor.name for tensor in model.graph.initializer}
    inputs = [value.name for value in model.graph.input if value.name not in initializers]
    art.check_graph_io(name, inputs, [value.name for value in model.graph.output])
