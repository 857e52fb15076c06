"""Opset/IR choice for a target onnxruntime, against onnxruntime's published table.

The expected values are worked out by hand from the two tables in
src/onnxport/graph/opsets.py (onnxruntime release -> ONNX release -> (IR, opset)), so
these tests hold on any installed onnxruntime (>= 1.17) and fail if the mapping is wrong.
The installed runtime is only checked for self-consistency: what `capability` claims for
it, it must really load.
"""

from __future__ import annotations

import pytest

from onnxport.errors import InputError
from onnxport.graph import opsets

# The table's newest row: onnxruntime 1.22 -> ONNX 1.18 -> IR 11, opset 23.
NEWEST_IN_TABLE = "1.22"
FLOOR = (11, 23)


@pytest.mark.parametrize(
    ("ort", "expected"),
    [
        ("1.0", (6, 11)), ("1.2", (6, 11)),                     # ONNX 1.6
        ("1.3", (7, 12)), ("1.5", (7, 12)),                     # ONNX 1.7
        ("1.6", (7, 13)), ("1.7", (7, 13)),                     # ONNX 1.8
        ("1.8", (7, 14)),                                       # ONNX 1.9
        ("1.9", (8, 15)), ("1.10", (8, 15)),                    # ONNX 1.10
        ("1.11", (8, 16)),                                      # ONNX 1.11
        ("1.12", (8, 17)), ("1.13", (8, 17)),                   # ONNX 1.12
        ("1.14", (8, 18)),                                      # ONNX 1.13
        ("1.15", (9, 19)), ("1.16", (9, 19)), ("1.16.3", (9, 19)),  # ONNX 1.14
        ("1.17", (9, 20)),                                      # ONNX 1.15
        ("1.18", (10, 21)), ("1.19", (10, 21)), ("1.20", (10, 21)),  # ONNX 1.16
        ("1.21", (10, 22)),                                     # ONNX 1.17
        ("1.22", (11, 23)), (" 1.22.1 ", (11, 23)),             # ONNX 1.18
    ],
)
def test_capability_follows_the_compatibility_table(ort, expected):
    assert opsets.capability(ort) == expected


def _not_probed():
    raise AssertionError("a release in the table must not be probed")


@pytest.fixture
def installed(monkeypatch):
    """Pretend a given onnxruntime release is installed, with a known probe result, so the
    branches for releases newer than the table do not depend on the real install."""
    import onnxruntime

    def pretend(version: str, probe=_not_probed):
        monkeypatch.setattr(onnxruntime, "__version__", version)
        monkeypatch.setattr(opsets, "probe_installed_capability", probe)

    return pretend


def test_a_release_in_the_table_is_never_probed_even_when_installed(installed):
    installed("1.22.0")
    assert opsets.capability("1.22") == FLOOR
    installed("1.17.3")
    assert opsets.capability("1.17") == (9, 20)
    assert opsets.capability("1.22") == FLOOR


def test_a_newer_installed_release_is_probed(installed):
    installed("1.99.2", probe=lambda: (42, 99))
    assert opsets.capability("1.99") == (42, 99)
    assert opsets.capability("1.99.0") == (42, 99)


def test_a_newer_release_that_is_not_installed_gets_the_tables_newest_row(installed):
    installed("1.99.2", probe=_not_probed)
    for version in ("1.23", "1.98", "1.100", "2.0", "2.99"):
        assert opsets.capability(version) == FLOOR, version


def test_older_than_1_0_is_an_input_error():
    with pytest.raises(InputError, match="older than 1.0"):
        opsets.capability("0.5")


@pytest.mark.parametrize("text", ["latest", "1", "", "one.two", "1.x"])
def test_bad_version_is_an_input_error(text):
    with pytest.raises(InputError, match="MAJOR.MINOR"):
        opsets.capability(text)


@pytest.mark.parametrize(("text", "expected"), [("1.17", (1, 17)), ("1.17.3", (1, 17)), ("2.0.0rc1", (2, 0)),
                                                ("  1.9 ", (1, 9))])
def test_parse_version(text, expected):
    assert opsets.parse_version(text) == expected


@pytest.mark.parametrize(
    ("ir", "opset", "expected"),
    [
        (6, 11, "1.0"), (7, 12, "1.3"), (7, 13, "1.6"), (7, 14, "1.8"), (8, 15, "1.9"), (8, 16, "1.11"),
        (8, 17, "1.12"), (8, 18, "1.14"), (9, 19, "1.15"), (9, 20, "1.17"), (10, 21, "1.18"),
        (10, 22, "1.21"), (11, 23, "1.22"),
        # The IR and the opset each need a release: the later of the two decides.
        (6, 14, "1.8"), (7, 17, "1.12"), (9, 15, "1.15"), (10, 14, "1.18"), (11, 11, "1.22"), (3, 7, "1.0"),
        # Beyond the table.
        (12, 23, "newer than 1.22 (opset 23, IR 12)"), (11, 24, "newer than 1.22 (opset 24, IR 11)"),
    ],
)
def test_min_ort_for(ir, opset, expected):
    assert opsets.min_ort_for(ir, opset) == expected


@pytest.mark.parametrize(("opset", "expected"), [(7, 6), (11, 6), (12, 7), (14, 7), (15, 8), (18, 8), (19, 9),
                                                 (20, 9), (21, 10), (22, 10), (23, 11), (24, 11)])
def test_min_ir_for_opset(opset, expected):
    assert opsets.min_ir_for_opset(opset) == expected


def test_min_ort_for_inverts_capability():
    """The oldest release that runs what a release can run is that release or an older one
    with the same capability."""
    for minor in range(0, 23):
        version = f"1.{minor}"
        oldest = opsets.min_ort_for(*opsets.capability(version))
        assert opsets.parse_version(oldest) <= (1, minor)
        assert opsets.capability(oldest) == opsets.capability(version)


# ---------------------------------------------------------------- the installed runtime


def test_installed_version_is_the_runtimes_major_minor():
    import onnxruntime

    major, minor = onnxruntime.__version__.split(".")[:2]
    assert opsets.installed_ort_version() == f"{major}.{minor}"


def _loads(ir_version: int, opset: int) -> bool:
    import onnxruntime
    from onnx import TensorProto, helper

    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph([node], "check", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    try:
        onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception:
        return False
    return True


def test_installed_runtime_capability_is_self_consistent():
    """For the installed runtime, `capability` is the table's row when the table has it, else
    the probe (never below the table's newest row); and the runtime really loads a model of
    that IR version and opset."""
    import onnx

    version = opsets.installed_ort_version()
    ir, opset = opsets.capability(version)
    if opsets.parse_version(version) <= opsets.parse_version(NEWEST_IN_TABLE):
        assert (ir, opset) == opsets._ONNX_RELEASES[opsets._ORT_TO_ONNX[opsets.parse_version(version)]]
    else:
        assert (ir, opset) == opsets.probe_installed_capability()
        assert ir >= FLOOR[0] and opset >= FLOOR[1]
        assert ir <= onnx.IR_VERSION and opset <= onnx.defs.onnx_opset_version()
    assert opsets.capability(version) >= (9, 20)  # onnxruntime 1.17 or newer
    assert _loads(ir, opset), (ir, opset)
