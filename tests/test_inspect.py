"""`onnxport inspect MODEL.onnx|ARTIFACT [--json]` and `onnxport.inspect(path)`.

The facts are checked against ONNX models built by hand in this file (whose names, dims,
op counts and parameter counts are known by construction) and against the PyTorch model
behind the exported all-MiniLM-L6-v2 artifact.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import onnxport
from onnxport.tools.cli import main
from onnxport.errors import ArtifactError

# ---------------------------------------------------------------- helpers


def run_cli(*args: str):
    # A wide console so that rich never wraps a line of JSON or an error message.
    return CliRunner(env={"COLUMNS": "400"}).invoke(main, [str(a) for a in args])


def assert_clean_user_error(result, *must_mention: str) -> str:
    """Exit code 2, one line on stderr starting with 'error:', no traceback anywhere."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:"), lines[0]
    for text in must_mention:
        assert text in lines[0], (text, lines[0])
    assert result.stdout.strip() == ""
    return lines[0]


def inspect_json(path: Path) -> dict:
    result = run_cli("inspect", path, "--json")
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


def build_tiny_model():
    """A hand-made 'encoder': embedding lookup + mean over the sequence.

    input_ids, attention_mask: int64 [batch, sequence]
    one initializer `embeddings`: float32 [10, 4] -> 40 parameters
    nodes: Gather, ReduceMean (x2), Cast -> 4 nodes
    outputs: sentence_embedding float32 [batch, 4], mask_ratio float32 [batch]
    opset 17 (ReduceMean still takes `axes` as an attribute), IR version 8.
    """
    from onnx import TensorProto, helper, numpy_helper

    embeddings = np.arange(40, dtype=np.float32).reshape(10, 4) / 10.0
    nodes = [
        helper.make_node("Gather", ["embeddings", "input_ids"], ["tokens"], axis=0),
        helper.make_node("ReduceMean", ["tokens"], ["sentence_embedding"], axes=[1], keepdims=0),
        helper.make_node("Cast", ["attention_mask"], ["mask_float"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["mask_float"], ["mask_ratio"], axes=[1], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "handmade",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"]),
        ],
        [
            helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("mask_ratio", TensorProto.FLOAT, ["batch"]),
        ],
        initializer=[numpy_helper.from_array(embeddings, name="embeddings")],  # raw_data: may go external
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="handmade", producer_version="0.1")
    model.ir_version = 8
    helper.set_model_props(model, {"source": "test_inspect"})
    return model


# Everything known about build_tiny_model() by construction. min_onnxruntime: IR 8 and
# opset 17 are ONNX 1.12, which onnxruntime first implements in release 1.12.
GOLDEN_TINY = {
    "inputs": [
        {"name": "input_ids", "dtype": "int64", "dims": ["batch", "sequence"]},
        {"name": "attention_mask", "dtype": "int64", "dims": ["batch", "sequence"]},
    ],
    "outputs": [
        {"name": "sentence_embedding", "dtype": "float32", "dims": ["batch", 4]},
        {"name": "mask_ratio", "dtype": "float32", "dims": ["batch"]},
    ],
    "opsets": {"ai.onnx": 17},
    "ir_version": 8,
    "min_onnxruntime": "1.12",
    "producer": "handmade 0.1",
    "external_data": [],
    "parameters": 40,
    "nodes": 4,
    "op_types": {"Gather": 1, "ReduceMean": 2, "Cast": 1},
    "fused_ops": {},
    "metadata": {"source": "test_inspect"},
}


@pytest.fixture
def tiny_onnx(tmp_path) -> Path:
    import onnx

    path = tmp_path / "tiny.onnx"
    onnx.save_model(build_tiny_model(), str(path))
    return path


@pytest.fixture
def tiny_external(tmp_path) -> Path:
    """The same model with its one initializer in w.data beside the .onnx file."""
    import onnx

    folder = tmp_path / "external"
    folder.mkdir()
    path = folder / "tiny.onnx"
    onnx.save_model(build_tiny_model(), str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="w.data", size_threshold=0)
    assert (folder / "w.data").exists()
    return path


def _without(model: dict, *keys: str) -> dict:
    return {k: v for k, v in model.items() if k not in keys}


# ---------------------------------------------------------------- a hand-built model


def test_hand_built_model_is_the_model_it_runs_as(tiny_onnx):
    """Sanity check of the reference itself: onnxruntime runs it and gets what we built."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    ids = np.array([[1, 2, 3], [4, 0, 0]], dtype=np.int64)
    mask = np.array([[1, 1, 1], [1, 0, 0]], dtype=np.int64)
    embedding, ratio = session.run(None, {"input_ids": ids, "attention_mask": mask})
    table = np.arange(40, dtype=np.float32).reshape(10, 4) / 10.0
    np.testing.assert_allclose(embedding, table[ids].mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(ratio, [1.0, 1 / 3], rtol=1e-6)


def test_inspect_json_matches_golden_description(tiny_onnx):
    info = inspect_json(tiny_onnx)
    assert set(info) == {"model"}
    model = info["model"]
    assert _without(model, "path", "size_bytes", "loads") == GOLDEN_TINY
    assert Path(model["path"]) == tiny_onnx
    assert model["size_bytes"] == tiny_onnx.stat().st_size
    assert model["loads"]["onnx_checker"]["ok"] is True
    assert model["loads"]["onnxruntime"]["ok"] is True
    import onnxruntime

    assert model["loads"]["onnxruntime"]["version"] == onnxruntime.__version__


def test_python_api_matches_cli_json(tiny_onnx):
    assert onnxport.inspect(tiny_onnx) == inspect_json(tiny_onnx)
    assert onnxport.inspect(str(tiny_onnx))["model"]["parameters"] == 40


def test_inspect_table_shows_the_same_facts(tiny_onnx):
    result = run_cli("inspect", tiny_onnx)
    assert result.exit_code == 0, (result.output, result.exception)
    out = result.stdout
    for name in ("input_ids", "attention_mask", "sentence_embedding", "mask_ratio"):
        assert name in out
    assert "[batch, sequence]" in out and "[batch, 4]" in out
    assert "ai.onnx 17" in out and "IR 8" in out and "onnxruntime >= 1.12" in out
    assert "40 parameters" in out and "4 nodes" in out
    assert "ReduceMean 2" in out and "Gather 1" in out and "Cast 1" in out
    assert "source=test_inspect" in out


def test_fused_microsoft_ops_are_counted(tmp_path):
    """A com.microsoft node is a fused op and its domain is listed among the opsets."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("FastGelu", ["x"], ["g"], domain="com.microsoft"),
        helper.make_node("Relu", ["g"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "fused", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    path = tmp_path / "fused.onnx"
    onnx.save_model(model, str(path))
    described = inspect_json(path)["model"]
    assert described["opsets"] == {"ai.onnx": 17, "com.microsoft": 1}
    assert described["op_types"] == {"FastGelu": 1, "Relu": 1}
    assert described["fused_ops"] == {"FastGelu": 1}
    assert described["parameters"] == 0 and described["nodes"] == 2


# ---------------------------------------------------------------- external data


def test_external_data_is_listed_and_counted_in_size(tiny_external):
    info = inspect_json(tiny_external)["model"]
    data_file = tiny_external.parent / "w.data"
    assert info["external_data"] == ["w.data"]
    assert info["size_bytes"] == tiny_external.stat().st_size + data_file.stat().st_size
    # The weights left the .onnx file (40 float32 = 160 bytes in w.data).
    assert data_file.stat().st_size >= 160
    # Everything else is the same model.
    expected = {**GOLDEN_TINY, "external_data": ["w.data"]}
    assert _without(info, "path", "size_bytes", "loads") == expected
    assert info["loads"]["onnx_checker"]["ok"] is True
    assert info["loads"]["onnxruntime"]["ok"] is True


def test_missing_external_data_is_a_clear_error(tiny_external):
    (tiny_external.parent / "w.data").unlink()
    assert_clean_user_error(run_cli("inspect", tiny_external), "w.data")
    assert_clean_user_error(run_cli("inspect", tiny_external, "--json"), "w.data")
    with pytest.raises(ArtifactError, match="w.data"):
        onnxport.inspect(tiny_external)


# ---------------------------------------------------------------- the exported all-MiniLM-L6-v2


def test_minilm_artifact_inspection(minilm_artifact, minilm_path):
    import torch
    import transformers

    info = inspect_json(minilm_artifact)
    art = info["artifact"]
    assert art["task"] == "sentence-embedding"
    assert art["pooling"] == "mean"
    assert art["normalize"] is True
    assert art["max_length"] == 256
    assert art["files"]["model.onnx"]["verified"] is True
    assert art["files"]["model.onnx"]["kind"] == "fp32"

    model = info["model"]
    assert Path(model["path"]) == minilm_artifact / "model.onnx"
    assert [(i["name"], i["dims"]) for i in model["inputs"]] == [
        ("input_ids", ["batch", "sequence"]),
        ("attention_mask", ["batch", "sequence"]),
        ("token_type_ids", ["batch", "sequence"]),
    ]
    assert {i["dtype"] for i in model["inputs"]} == {"int64"}
    outputs = {o["name"]: o for o in model["outputs"]}
    assert outputs["sentence_embedding"]["dims"] == ["batch", 384]
    assert outputs["sentence_embedding"]["dtype"] == "float32"
    assert outputs["token_embeddings"]["dims"] == ["batch", "sequence", 384]
    assert model["size_bytes"] == (minilm_artifact / "model.onnx").stat().st_size
    assert model["loads"]["onnx_checker"]["ok"] and model["loads"]["onnxruntime"]["ok"]

    # Parameters against the PyTorch model, counted independently. The sentence-embedding
    # graph mean-pools the token vectors, so BertModel's pooler (dense 384x384 + bias) is
    # never used and the exporter drops it: ONNX == PyTorch - pooler, exactly.
    with torch.no_grad():
        torch_model = transformers.AutoModel.from_pretrained(minilm_path)
    named = dict(torch_model.named_parameters())
    torch_total = sum(p.numel() for p in torch_model.parameters())
    pooler = sum(p.numel() for name, p in named.items() if name.startswith("pooler."))
    assert pooler == 384 * 384 + 384
    assert model["parameters"] == torch_total - pooler

    import onnx

    graph = onnx.load(str(minilm_artifact / "model.onnx")).graph
    assert not [t.name for t in graph.initializer if "pooler" in t.name]


def test_minilm_model_file_alone_describes_the_same_model(minilm_artifact):
    whole = inspect_json(minilm_artifact)["model"]
    alone = inspect_json(minilm_artifact / "model.onnx")
    assert set(alone) == {"model"}
    assert alone["model"] == whole


# ---------------------------------------------------------------- bad input


def test_path_that_does_not_exist(tmp_path):
    missing = tmp_path / "nowhere" / "model.onnx"
    assert_clean_user_error(run_cli("inspect", missing), "does not exist")
    with pytest.raises(ArtifactError):
        onnxport.inspect(missing)


def test_text_file_named_onnx(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("this is not an ONNX model\njust a few lines of text\n")
    assert_clean_user_error(run_cli("inspect", path), "notes.onnx")
    with pytest.raises(ArtifactError):
        onnxport.inspect(path)


def test_truncated_onnx_file(tmp_path, minilm_artifact):
    data = (minilm_artifact / "model.onnx").read_bytes()
    path = tmp_path / "half.onnx"
    path.write_bytes(data[: len(data) // 2])
    assert_clean_user_error(run_cli("inspect", path), "half.onnx")
    with pytest.raises(ArtifactError):
        onnxport.inspect(path)


def test_truncated_small_onnx_file(tmp_path, tiny_onnx):
    data = tiny_onnx.read_bytes()
    path = tmp_path / "half-tiny.onnx"
    path.write_bytes(data[: len(data) // 2])
    assert_clean_user_error(run_cli("inspect", path), "half-tiny.onnx")


def test_empty_onnx_file(tmp_path):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    assert_clean_user_error(run_cli("inspect", path), "empty")


@pytest.fixture
def artifact_copy(tmp_path, minilm_artifact) -> Path:
    target = tmp_path / "artifact"
    shutil.copytree(minilm_artifact, target)
    return target


def test_artifact_without_manifest(artifact_copy):
    (artifact_copy / "onnxport.json").unlink()
    assert_clean_user_error(run_cli("inspect", artifact_copy), "onnxport.json")
    with pytest.raises(ArtifactError):
        onnxport.inspect(artifact_copy)


@pytest.mark.parametrize("content", ["{not json at all", "", '{"task": "sentence-embedding"}', "[1, 2, 3]"])
def test_artifact_with_corrupt_manifest(artifact_copy, content):
    (artifact_copy / "onnxport.json").write_text(content)
    assert_clean_user_error(run_cli("inspect", artifact_copy, "--json"), "onnxport.json")
    with pytest.raises(ArtifactError):
        onnxport.inspect(artifact_copy)


def test_directory_that_is_not_an_artifact(tmp_path, tiny_onnx):
    folder = tmp_path / "just-a-model"
    folder.mkdir()
    shutil.copy(tiny_onnx, folder / "model.onnx")
    assert_clean_user_error(run_cli("inspect", folder), "onnxport.json")
