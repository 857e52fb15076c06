"""The int8 guard's two fast tools: how much each unit's int8 costs, from one graph, and
graphs that keep some units float without running the quantizer again.

Both rest on one fact: onnxruntime's quantizer keeps every node's output name, so the
quantized node that produces a float node's output can be found and swapped.

Ranking (`switch_graph`): one graph holds, for every unit, both its float node and its
quantized one, mixed by a scalar input: `y = fp32 + switch * (int8 - fp32)`. One session
over it then measures each unit int8 alone against fp32 (its switch 1, every other 0) by
changing a feed, where the guard used to re-run the quantizer and load a new file per unit.

Splicing (`keep_float`): a unit is put back in float by replacing the quantized node that
produces each of its outputs with the original node (and its float weights) and dropping what
nothing reads any more. The guard builds each candidate file this way from one quantized graph.
"""

from __future__ import annotations

from typing import Iterable

SWITCH_PREFIX = "onnxport_int8_switch_"


def switch_graph(quantized, original, units: dict[str, list[str]]):
    """(graph, {unit: its switch input}): the `quantized` graph with every unit's float node
    beside its quantized one, the unit's outputs being `fp32 + switch * (int8 - fp32)`.
    All switches 0 computes the float model, all 1 the quantized one. Units none of whose
    nodes the quantizer changed (or whose nodes have several outputs) get no switch."""
    import onnx
    from onnx import helper

    mixed = onnx.ModelProto()
    mixed.CopyFrom(quantized)
    graph = mixed.graph
    originals = {node.name: node for node in original.graph.node}
    weights = {t.name: t for t in original.graph.initializer}
    have = {t.name for t in graph.initializer}
    nodes = list(graph.node)
    producer = {output: index for index, node in enumerate(nodes) for output in node.output if output}
    after: dict[int, list] = {}  # quantized node index -> nodes to put right after it
    switches: dict[str, str] = {}
    for number, (unit, names) in enumerate(units.items()):
        switch = f"{SWITCH_PREFIX}{number}"
        for name in names:
            node = originals.get(name)
            if node is None or len([o for o in node.output if o]) != 1:
                continue
            output = node.output[0]
            index = producer.get(output)
            if index is None or nodes[index].name == name:  # not quantized: nothing to switch
                continue
            quantized_node = onnx.NodeProto()
            quantized_node.CopyFrom(nodes[index])
            quantized_node.output[list(quantized_node.output).index(output)] = f"{output}/int8"
            nodes[index] = quantized_node
            float_node = onnx.NodeProto()
            float_node.CopyFrom(node)
            float_node.output[0] = f"{output}/fp32"
            after.setdefault(index, []).extend([
                float_node,
                helper.make_node("Sub", [f"{output}/int8", f"{output}/fp32"], [f"{output}/delta"]),
                helper.make_node("Mul", [f"{output}/delta", switch], [f"{output}/switched"]),
                helper.make_node("Add", [f"{output}/fp32", f"{output}/switched"], [output]),
            ])
            for tensor in node.input:
                if tensor in weights and tensor not in have:
                    graph.initializer.append(weights[tensor])
                    have.add(tensor)
            switches[unit] = switch
    graph.ClearField("node")
    for index, node in enumerate(nodes):
        graph.node.append(node)
        graph.node.extend(after.get(index, []))
    graph.input.extend(helper.make_tensor_value_info(switch, onnx.TensorProto.FLOAT, [])
                       for switch in dict.fromkeys(switches.values()))
    return mixed, switches


def keep_float(quantized, original, float_nodes: Iterable[str]):
    """A copy of the `quantized` graph in which the `original` nodes named in `float_nodes` run
    in float again, with their float weights; quantize-dequantize nodes only they used are gone."""
    import onnx

    spliced = onnx.ModelProto()
    spliced.CopyFrom(quantized)
    graph = spliced.graph
    originals = {node.name: node for node in original.graph.node}
    weights = {t.name: t for t in original.graph.initializer}
    nodes = list(graph.node)
    producer = {output: index for index, node in enumerate(nodes) for output in node.output if output}
    have = {t.name for t in graph.initializer}
    for name in float_nodes:
        node = originals[name]
        nodes[producer[node.output[0]]] = node
        for tensor in node.input:
            if tensor in weights and tensor not in have:
                graph.initializer.append(weights[tensor])
                have.add(tensor)
    kept = _live(nodes, {o.name for o in graph.output})
    needed = {tensor for node in kept for tensor in node.input} | {o.name for o in graph.output}
    graph.ClearField("node")
    graph.node.extend(kept)
    live_weights = [t for t in graph.initializer if t.name in needed]
    graph.ClearField("initializer")
    graph.initializer.extend(live_weights)
    produced = {output for node in kept for output in node.output}
    live_info = [v for v in graph.value_info if v.name in produced]
    graph.ClearField("value_info")
    graph.value_info.extend(live_info)
    return spliced


def _live(nodes: list, wanted: set[str]) -> list:
    """The nodes some graph output depends on, in their order (graph-holding nodes always)."""
    wanted = set(wanted)
    alive = []
    for node in reversed(nodes):
        if any(o in wanted for o in node.output) or any(a.g.node or a.graphs for a in node.attribute):
            alive.append(node)
            wanted.update(node.input)
    return alive[::-1]
