"""Module hierarchy tags (hierarchy.py), their CLI views, and the per-module profile (profile.py).

The truth about which module computed a node comes from PyTorch, by a route independent of
the tags: a weight is matched by value to the `named_parameters()` entry it came from, and
the node that consumes it must carry that parameter's module. Parameter counts are summed
from `named_parameters()`; class paths are rebuilt from `named_modules()`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import helper, numpy_helper

import onnxport
from onnxport.core.sample_texts import builtin_texts
from onnxport.graph import tags as hierarchy
from onnxport.tools.cli import main
from onnxport.errors import InputError

TAG_KEYS = {"onnxport.module", "onnxport.class", "onnxport.scope", "onnxport.tagged_by"}


def run_cli(*args):
    return CliRunner(env={"COLUMNS": "400"}).invoke(main, [str(a) for a in args])


def tags_of(node) -> dict[str, str]:
    return {p.key: p.value for p in node.metadata_props if p.key in TAG_KEYS}


def module_of(node) -> str | None:
    return tags_of(node).get("onnxport.module")


@pytest.fixture(scope="module")
def torch_bert(tiny_bert_folder):
    from transformers import BertModel

    return BertModel.from_pretrained(tiny_bert_folder).eval()


@pytest.fixture(scope="module")
def tagged(tmp_path_factory, tiny_bert_folder) -> Path:
    """The tiny BERT exported with the default (TorchScript) exporter; tags are on by default."""
    out = tmp_path_factory.mktemp("hier") / "tagged"
    onnxport.export(tiny_bert_folder, out=out, verify=False)
    return out


@pytest.fixture()
def work_copy(tagged, tmp_path) -> Path:
    copy = tmp_path / "artifact"
    shutil.copytree(tagged, copy)
    return copy


def parameter_owners(torch_model) -> list[tuple[np.ndarray, str]]:
    """(weight as ONNX stores it for a MatMul: transposed, module path) for every Linear."""
    import torch

    return [(module.weight.detach().numpy().T, path) for path, module in torch_model.named_modules()
            if isinstance(module, torch.nn.Linear)]


def owner_of(array: np.ndarray, owners) -> str | None:
    matches = [module for weight, module in owners if weight.shape == array.shape and np.array_equal(weight, array)]
    return matches[0] if len(matches) == 1 else None


def class_chain(torch_model, module_path: str) -> str:
    """Classes of the modules whose forward runs on the way to `module_path` (containers never run)."""
    import torch

    modules = dict(torch_model.named_modules())
    parts = module_path.split(".") if module_path else []
    chain = [modules[""]] + [modules[".".join(parts[:i])] for i in range(1, len(parts) + 1)]
    return "/".join(type(m).__name__ for m in chain if not isinstance(m, (torch.nn.ModuleList, torch.nn.ModuleDict)))


# ---------------------------------------------------------------- tags at export


def test_the_key_projection_matmul_carries_exactly_its_module_and_class_path(tagged, torch_bert):
    model = onnx.load(str(tagged / "model.onnx"))
    weight = torch_bert.get_parameter("encoder.layer.1.attention.self.key.weight").detach().numpy().T
    initializers = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    names = [name for name, array in initializers.items() if array.shape == weight.shape
             and np.array_equal(array, weight)]
    assert len(names) == 1
    consumers = [n for n in model.graph.node if names[0] in n.input]
    assert [n.op_type for n in consumers] == ["MatMul"]
    tags = tags_of(consumers[0])
    assert tags["onnxport.module"] == "encoder.layer.1.attention.self.key"
    assert tags["onnxport.class"] == class_chain(torch_bert, "encoder.layer.1.attention.self.key")
    assert tags["onnxport.class"] == "BertModel/BertEncoder/BertLayer/BertAttention/BertSelfAttention/Linear"
    assert tags["onnxport.tagged_by"] == "exporter"
    # Tags are metadata, never attributes: the node keeps exactly the attributes of its schema.
    for node in model.graph.node:
        schema = onnx.defs.get_schema(node.op_type, domain=node.domain)
        assert {a.name for a in node.attribute} <= set(schema.attributes), node.name


def test_every_scoped_node_is_tagged_with_its_scope_and_the_rest_is_counted_as_glue(tagged, torch_bert):
    model = onnx.load(str(tagged / "model.onnx"))
    modules = dict(torch_bert.named_modules())
    for node in model.graph.node:
        if node.name.startswith("/model/"):
            # BERT has no ModuleDicts, so the scope components joined by dots are the path.
            expected = ".".join(node.name.split("/")[2:-1])
            assert module_of(node) == expected, node.name
            assert expected in modules
            assert tags_of(node)["onnxport.class"] == class_chain(torch_bert, expected)
    tree = hierarchy.module_tree(model)
    untagged = [n for n in model.graph.node if not tags_of(n)]
    assert tree["glue_nodes"] == len(untagged) > 0
    assert all(not n.name.startswith("/") for n in untagged)  # glue is what the exporter gave no scope
    assert tree["coverage"]["share"] == 1.0
    assert tree["tagged_nodes"] + tree["glue_nodes"] == len(model.graph.node)


def test_tagged_model_passes_the_full_checker_loads_and_computes_what_the_untagged_one_does(
        tagged, tiny_bert_folder, tmp_path):
    import onnxruntime as ort

    onnx.checker.check_model(str(tagged / "model.onnx"), full_check=True)
    plain = tmp_path / "plain"
    onnxport.export(tiny_bert_folder, out=plain, verify=False, hierarchy=False)
    assert not (plain / "hierarchy.json").exists()
    assert not any(tags_of(n) for n in onnx.load(str(plain / "model.onnx")).graph.node)
    rng = np.random.default_rng(0)
    feed = {"input_ids": rng.integers(0, 30522, (3, 9)), "attention_mask": np.ones((3, 9), np.int64),
            "token_type_ids": np.zeros((3, 9), np.int64)}
    got = ort.InferenceSession(str(tagged / "model.onnx"), providers=["CPUExecutionProvider"]).run(None, feed)
    want = ort.InferenceSession(str(plain / "model.onnx"), providers=["CPUExecutionProvider"]).run(None, feed)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def test_module_tree_parameter_counts_equal_pytorch_named_parameters(tagged, torch_bert):
    tree = hierarchy.module_tree(onnx.load(str(tagged / "model.onnx")))
    params = dict(torch_bert.named_parameters())
    assert tree["unowned_parameters"] == 0
    assert tree["parameters"] == sum(p.numel() for p in params.values())
    rows = {row["module"]: row for row in tree["modules"]}
    expected_modules = {"", "embeddings", "encoder.layer.0.attention.self.query", "encoder.layer.1.output",
                        "pooler.dense"}
    assert expected_modules <= set(rows)
    for module, row in rows.items():
        expected = sum(p.numel() for name, p in params.items() if not module or name.startswith(module + "."))
        assert row["parameters"] == expected, module
    # Nodes add up the tree: a layer holds its attention, intermediate and output blocks and its own nodes.
    layer = rows["encoder.layer.1"]
    children = [r for m, r in rows.items() if m.startswith("encoder.layer.1.") and m.count(".") == 3]
    assert layer["nodes"] == layer["own_nodes"] + sum(r["nodes"] for r in children)


def test_sidecar_maps_every_node_to_its_module(tagged):
    model = onnx.load(str(tagged / "model.onnx"))
    sidecar = json.loads((tagged / "hierarchy.json").read_text())
    entry = sidecar["files"]["model.onnx"]
    assert len(entry["nodes"]) == len(model.graph.node)
    for node in model.graph.node:
        assert entry["nodes"][node.name] == module_of(node)
    assert entry["tree"]["modules"] == hierarchy.module_tree(model)["modules"]


def test_dynamo_export_tags_the_same_module_and_class_path(tiny_bert_folder, torch_bert, tmp_path):
    out = tmp_path / "dynamo"
    onnxport.export(tiny_bert_folder, out=out, exporter="dynamo", verify=False)
    model = onnx.load(str(out / "model.onnx"))
    assert onnxport.Artifact(out).spec.exporter.value == "dynamo"
    initializers = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    owners = parameter_owners(torch_bert)
    checked = 0
    for node in model.graph.node:
        if node.op_type == "MatMul" and node.input[1] in initializers:
            owner = owner_of(initializers[node.input[1]], owners)
            if owner is not None:
                assert module_of(node) == owner
                assert tags_of(node)["onnxport.class"] == class_chain(torch_bert, owner)
                checked += 1
    assert checked == 12  # q, k, v, attention output, intermediate, output in 2 layers
    onnx.checker.check_model(str(out / "model.onnx"), full_check=True)


# ---------------------------------------------------------------- optimize and quantize


def test_tags_survive_optimize_and_fused_attention_gets_its_attention_module(work_copy, torch_bert):
    import onnxruntime as ort

    from onnxport import optimize

    name, counts, _ = optimize(work_copy, verify=False)
    assert counts.get("Attention") == 2
    path = work_copy / name
    model = onnx.load(str(path))
    initializers = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    queries = {layer: torch_bert.get_parameter(f"encoder.layer.{layer}.attention.self.query.weight").detach().numpy().T
               for layer in (0, 1)}
    for node in (n for n in model.graph.node if n.op_type == "Attention"):
        qkv = initializers[node.input[1]]  # [hidden, 3 * hidden]: query, key, value weights side by side
        layer = next(i for i, w in queries.items() if np.array_equal(qkv[:, :w.shape[1]], w))
        assert module_of(node) == f"encoder.layer.{layer}.attention.self"
        assert tags_of(node)["onnxport.tagged_by"] == "replaced"
    for node in model.graph.node:
        if node.op_type in ("SkipLayerNormalization", "BiasGelu", "EmbedLayerNormalization"):
            assert module_of(node) is not None, node.name
    assert {module_of(n) for n in model.graph.node if n.op_type == "EmbedLayerNormalization"} == {"embeddings"}
    assert hierarchy.coverage(model)["share"] == 1.0
    onnx.checker.check_model(str(path), full_check=True)
    ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert "model.opt.onnx" in json.loads((work_copy / "hierarchy.json").read_text())["files"]


def test_tags_survive_quantize_and_excluded_modules_stay_float(work_copy, torch_bert):
    import onnxruntime as ort

    from onnxport import quantize

    entry = quantize(work_copy, guard=False, texts=builtin_texts(8),
                     exclude_modules=["encoder.layer.1.intermediate"])
    assert entry["source_file"] == "model.onnx"
    source = onnx.load(str(work_copy / "model.onnx"))
    int8 = onnx.load(str(work_copy / "model.int8.onnx"))
    owners = parameter_owners(torch_bert)
    source_weights = {t.name: numpy_helper.to_array(t) for t in source.graph.initializer}
    int8_weights = {t.name for t in int8.graph.initializer}
    quantized = {}
    for node in int8.graph.node:
        if node.op_type == "MatMulInteger":
            # onnxruntime names the int8 weight after the float one: `<weight>_quantized`, and
            # a Gemm's weight `<weight>_Transposed_quantized` (Gemm keeps PyTorch's layout).
            weight = node.input[1].removesuffix("_quantized")
            array = source_weights[weight.removesuffix("_Transposed")]
            owner = owner_of(array.T if weight.endswith("_Transposed") else array, owners)
            assert owner is not None and module_of(node) == owner
            quantized[owner] = node
        elif node.op_type == "MatMul" and node.input[1] in int8_weights and node.input[1] in source_weights:
            owner = owner_of(source_weights[node.input[1]], owners)
            assert owner == "encoder.layer.1.intermediate.dense" and module_of(node) == owner
    assert set(quantized) == {module for _, module in owners} - {"encoder.layer.1.intermediate.dense"}
    assert hierarchy.coverage(int8)["share"] == 1.0
    onnx.checker.check_model(str(work_copy / "model.int8.onnx"), full_check=True)
    ort.InferenceSession(str(work_copy / "model.int8.onnx"), providers=["CPUExecutionProvider"])


def test_exclude_modules_that_match_nothing_is_a_clear_error(tagged):
    from onnxport import quantize

    with pytest.raises(InputError, match="no module matches 'decoder.\\*'.*encoder"):
        quantize(tagged, guard=False, exclude_modules=["decoder.*"])


def test_nodes_matching_modules_takes_globs_regexes_and_includes_submodules(tagged):
    model = onnx.load(str(tagged / "model.onnx"))
    by_glob = set(hierarchy.nodes_matching_modules(model, "encoder.layer.*.attention.self"))
    by_regex = set(hierarchy.nodes_matching_modules(model, [r"re:encoder\.layer\.\d\.attention\.self"]))
    expected = {n.name for n in model.graph.node if n.name.startswith(("/model/encoder/layer.0/attention/self/",
                                                                       "/model/encoder/layer.1/attention/self/"))}
    assert by_glob == by_regex
    assert expected <= by_glob  # the Identity aliases of q/k/v weights are in too
    assert all(module_of(n).startswith("encoder.layer.") for n in model.graph.node if n.name in by_glob)


def test_retag_follows_fusions_by_region_name_and_neighbours():
    """A hand-made graph: a mask computed at the root and shared by two layers, each layer's
    Mul + Relu fused into one node, a renamed helper and an unnamed one."""
    def tag(node, module, classes):
        hierarchy.write_tag(node, hierarchy.Tag(tuple(module.split(".")) if module else (), tuple(classes)),
                            "exporter")
        return node

    f = helper.make_tensor_value_info
    original = helper.make_graph(
        [tag(helper.make_node("Neg", ["mask"], ["ext"], name="/mask/Neg"), "", ["Net"]),
         tag(helper.make_node("Mul", ["x", "ext"], ["a0"], name="/l0/Mul"), "layers.0", ["Net", "Block"]),
         tag(helper.make_node("Relu", ["a0"], ["y0"], name="/l0/act/Relu"), "layers.0.act", ["Net", "Block", "ReLU"]),
         tag(helper.make_node("Mul", ["y0", "ext"], ["a1"], name="/l1/Mul"), "layers.1", ["Net", "Block"]),
         tag(helper.make_node("Relu", ["a1"], ["y1"], name="/l1/act/Relu"), "layers.1.act", ["Net", "Block", "ReLU"]),
         helper.make_node("Identity", ["y1"], ["out"], name="Identity_0")],
        "g", [f("x", 1, [2]), f("mask", 1, [2])], [f("out", 1, [2])])
    new = helper.make_graph(
        [helper.make_node("FusedMulRelu", ["x", "mask"], ["y0"], name="Fused_0", domain="test"),
         helper.make_node("Cast", ["y0"], ["y0c"], name="/l1/act/Relu_helper", to=1),
         helper.make_node("FusedMulRelu", ["y0c", "mask"], ["y1"], name="Fused_1", domain="test"),
         helper.make_node("Identity", ["y1"], ["z"]),
         helper.make_node("Identity", ["z"], ["out"], name="Identity_0")],
        "g", [f("x", 1, [2]), f("mask", 1, [2])], [f("out", 1, [2])])
    original_model, new_model = helper.make_model(original), helper.make_model(new)
    counts = hierarchy.retag(original_model, new_model)
    modules = {n.name or n.op_type: module_of(n) for n in new_model.graph.node}
    # The shared mask (used by both layers) is not part of either fusion; each takes its layer.
    assert modules["Fused_0"] == "layers.0" and modules["Fused_1"] == "layers.1"
    assert modules["/l1/act/Relu_helper"] == "layers.1.act"  # named after the node it came from
    assert modules["Identity"] == "layers.1"  # unnamed, new outputs: from its neighbours
    assert modules["Identity_0"] is None  # glue stays glue
    assert counts == {"replaced": 2, "name": 1, "neighbours": 1, "glue": 1}


# ---------------------------------------------------------------- CLI and profile


def test_inspect_hierarchy_lists_the_module_tree(tagged, torch_bert):
    result = run_cli("inspect", tagged, "--hierarchy", "--depth", "2", "--json")
    assert result.exit_code == 0, result.output
    tree = json.loads(result.stdout)
    rows = {row["module"]: row for row in tree["modules"]}
    assert max(row["depth"] for row in rows.values()) == 2
    assert rows["encoder.layer.1"]["class"] == "BertLayer"
    assert rows["encoder.layer.1"]["parameters"] == sum(
        p.numel() for n, p in torch_bert.named_parameters() if n.startswith("encoder.layer.1."))
    table = run_cli("inspect", tagged, "--hierarchy")
    assert table.exit_code == 0
    assert "encoder.layer.1.attention.self.key" in table.stdout and "BertSelfAttention" in table.stdout
    assert f"glue (no module): {tree['glue_nodes']} of {tree['nodes']} nodes" in table.stdout


def test_no_hierarchy_flag_leaves_no_tags_and_inspect_says_so(tiny_bert_folder, tmp_path):
    out = tmp_path / "plain"
    result = run_cli("export", "-m", tiny_bert_folder, "-o", out, "--no-hierarchy", "--no-verify")
    assert result.exit_code == 0, result.output
    model = onnx.load(str(out / "model.onnx"))
    assert not any(p.key.startswith("onnxport.") for n in model.graph.node for p in n.metadata_props)
    assert not (out / "hierarchy.json").exists()
    for command in (["inspect", out, "--hierarchy"], ["profile", out]):
        result = run_cli(*command)
        assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
        assert "Traceback" not in result.output
        assert result.stderr.startswith("error:") and "--no-hierarchy" in result.stderr


def test_profile_puts_all_kernel_time_on_modules(tagged):
    from onnxport.tools.profile import profile

    result = profile(tagged, model="fp32", texts=builtin_texts(24), batch_size=8)
    assert result.runs == 3
    assert 0 < result.kernel_ms <= result.wall_ms
    rows = result.rows(depth=3)
    assert abs(sum(row["share"] for row in rows) - 1.0) < 1e-9
    assert abs(sum(row["ms"] for row in rows) - result.kernel_ms) < 1e-2
    # Each kernel of a node that is in the file is put on that node's tagged module.
    model = onnx.load(str(tagged / "model.onnx"))
    file_modules = {n.name: module_of(n) for n in model.graph.node}
    in_file = [name for name in result.nodes if name in file_modules]
    assert len(in_file) > 10
    for name in in_file:
        assert (result.nodes[name].tag.module if result.nodes[name].tag else None) == file_modules[name]
    assert all(node.found for node in result.nodes.values())
    # Coarser rows are sums of finer ones.
    fine = {row["module"]: row["ms"] for row in rows}
    coarse = {row["module"]: row["ms"] for row in result.rows(depth=1)}
    assert coarse["encoder"] == pytest.approx(sum(ms for m, ms in fine.items() if m.startswith("encoder.")), abs=0.01)
    merged = {row["module"] for row in result.rows(depth=3, merge_layers=True)}
    assert {"encoder.layer.*.attention", "encoder.layer.*.intermediate", "encoder.layer.*.output"} <= merged


def test_profile_cli_json_and_table(tagged, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("a short one\nthe second text is a little longer than the first\n")
    result = run_cli("profile", tagged, "--model", "fp32", "--texts", texts, "--depth", "2", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["texts"] == 2 and data["runs"] == 1 and data["depth"] == 2
    assert 0 < data["kernel_ms"] <= data["wall_ms"]
    assert abs(sum(row["share"] for row in data["rows"]) - 1.0) < 1e-3
    table = run_cli("profile", tagged, "--texts", texts, "--merge-layers")
    assert table.exit_code == 0, table.output
    assert "encoder.layer.*.attention" in table.stdout and "of the measured wall time" in table.stdout


def test_reading_tags_and_profiling_do_not_import_torch(tagged):
    code = f"""
import sys
from onnxport.graph.tags import inspect_hierarchy
from onnxport.tools.profile import profile
inspect_hierarchy({str(tagged)!r}, 2)
profile({str(tagged)!r}, texts=["hello", "world"])
print(",".join(m for m in ("torch", "transformers") if m in sys.modules))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
