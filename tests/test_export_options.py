"""Export options: a custom module (seed 003), int32 inputs, static shapes, dropped
token_type_ids, the target onnxruntime, and external data."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import onnxport

TEXTS = ["a short one", "a rather longer text that needs more tokens than the others", "mid length text"]


class CustomModel(torch.nn.Module):
    """Seed 003's model: backbone + dropout + Linear head, forward order ids, types, mask."""

    def __init__(self, backbone, num_labels=4):
        super().__init__()
        self.model = backbone
        self.fc_dropout = torch.nn.Dropout(0.2)
        self.fc = torch.nn.Linear(backbone.config.hidden_size, num_labels)

    def forward(self, input_ids, token_type_ids, attention_mask):
        outputs = self.model(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask)
        return self.fc(self.fc_dropout(outputs[0]))


@pytest.fixture()
def custom_model(tiny_bert_folder):
    from transformers import AutoModel

    torch.manual_seed(3)
    return CustomModel(AutoModel.from_pretrained(tiny_bert_folder)).eval()


def _encode(tokenizer, texts):
    return tokenizer(texts, padding=True, return_tensors="np", return_token_type_ids=True)


def _run(path, feed):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session.run(None, {n: feed[n] for n in names}), session


def test_custom_module_exports_as_is_and_runs_on_int32(tmp_path, custom_model, wordpiece_tokenizer):
    out = tmp_path / "custom"
    artifact = onnxport.export(custom_model, tokenizer=wordpiece_tokenizer, out=out, int32=True,
                               output_names=["logits"])
    assert artifact.task is onnxport.Task.CUSTOM and artifact.verified()
    enc = _encode(wordpiece_tokenizer, TEXTS)
    feed = {k: v.astype(np.int32) for k, v in enc.items()}
    (logits,), session = _run(out / "model.onnx", feed)
    assert {i.name: i.type for i in session.get_inputs()} == {
        "input_ids": "tensor(int32)", "attention_mask": "tensor(int32)", "token_type_ids": "tensor(int32)"}
    assert [o.name for o in session.get_outputs()] == ["logits"]
    with torch.no_grad():  # the module's own forward order: ids, types, mask
        expected = custom_model(torch.tensor(enc["input_ids"]), torch.tensor(enc["token_type_ids"]),
                                torch.tensor(enc["attention_mask"])).numpy()
    real = enc["attention_mask"].astype(bool)
    assert np.abs(logits - expected)[real].max() <= 1e-4
    assert custom_model.training is False


def test_int32_export_of_a_folder(tmp_path, tiny_bert_folder, wordpiece_tokenizer):
    out = tmp_path / "int32"
    onnxport.export(tiny_bert_folder, out=out, int32=True)
    enc = _encode(wordpiece_tokenizer, TEXTS)
    (hidden, pooled), session = _run(out / "model.onnx", {k: v.astype(np.int32) for k, v in enc.items()})
    assert all(i.type == "tensor(int32)" for i in session.get_inputs())
    from transformers import AutoModel

    model = AutoModel.from_pretrained(tiny_bert_folder).eval()
    with torch.no_grad():
        expected = model(**{k: torch.tensor(v) for k, v in enc.items()})
    real = enc["attention_mask"].astype(bool)
    assert np.abs(hidden - expected.last_hidden_state.numpy())[real].max() <= 1e-4
    assert np.abs(pooled - expected.pooler_output.numpy()).max() <= 1e-4


def test_static_shape_fixes_the_dims(tmp_path, tiny_bert_folder):
    out = tmp_path / "static"
    artifact = onnxport.export(tiny_bert_folder, out=out, static_shape=(2, 16))
    model = onnx.load(str(out / "model.onnx"))
    dims = [[d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input]
    assert dims == [[2, 16]] * len(dims)
    assert artifact.verified()


def test_no_token_type_ids_feeds_zeros_inside(tmp_path, tiny_bert_folder, wordpiece_tokenizer):
    out = tmp_path / "no-types"
    onnxport.export(tiny_bert_folder, out=out, token_type_ids=False)
    enc = _encode(wordpiece_tokenizer, TEXTS)
    (hidden, _), session = _run(out / "model.onnx", enc)
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]
    from transformers import AutoModel

    model = AutoModel.from_pretrained(tiny_bert_folder).eval()
    with torch.no_grad():
        expected = model(input_ids=torch.tensor(enc["input_ids"]), attention_mask=torch.tensor(enc["attention_mask"]),
                         token_type_ids=torch.zeros_like(torch.tensor(enc["input_ids"]))).last_hidden_state
    real = enc["attention_mask"].astype(bool)
    assert np.abs(hidden - expected.numpy())[real].max() <= 1e-4


def test_target_ort_picks_its_highest_opset_and_ir(tmp_path, tiny_bert_folder):
    out = tmp_path / "ort114"
    artifact = onnxport.export(tiny_bert_folder, out=out, target_ort="1.14")
    model = onnx.load(str(out / "model.onnx"))
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [18]
    assert model.ir_version == 8
    assert artifact.manifest["min_onnxruntime"] == "1.14"


def test_external_data_artifact_loads_and_verifies(tmp_path, tiny_bert_folder):
    out = tmp_path / "external"
    artifact = onnxport.export(tiny_bert_folder, out=out, external_data_threshold=0)
    assert (out / "model.onnx.data").exists()
    assert artifact.manifest["files"]["model.onnx"]["external_data"] == ["model.onnx.data"]
    assert (out / "model.onnx").stat().st_size < (out / "model.onnx.data").stat().st_size
    assert artifact.verified()
    info = onnxport.inspect(out)
    assert info["model"]["external_data"] == ["model.onnx.data"]


def test_token_classifier_keeps_its_labels(tmp_path, tiny_token_classifier_folder):
    out = tmp_path / "ner"
    artifact = onnxport.export(tiny_token_classifier_folder, out=out)
    assert artifact.task is onnxport.Task.TOKEN_CLASSIFICATION  # detected from config.architectures
    assert artifact.labels == {0: "O", 1: "B-SRC", 2: "I-SRC", 3: "B-DEST", 4: "I-DEST"}
    assert [(o.name, o.dims) for o in artifact.outputs] == [("logits", ("batch", "sequence", 5))]


def test_dynamo_exporter_also_verifies(tmp_path, tiny_bert_folder):
    artifact = onnxport.export(tiny_bert_folder, out=tmp_path / "dynamo", exporter="dynamo")
    assert artifact.spec.exporter.value == "dynamo"
    assert artifact.verified()
