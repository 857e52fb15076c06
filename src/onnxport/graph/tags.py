"""The PyTorch module hierarchy on every ONNX node: which module computed it, and what it holds.

Tags live in node `metadata_props` (never custom attributes, which onnx.checker and
onnxruntime reject):

    onnxport.module     encoder.layer.3.attention.self.query   (as `model.named_modules()` spells it)
    onnxport.class      BertModel/BertEncoder/BertLayer/BertAttention/BertSelfAttention/Linear
    onnxport.scope      encoder/layer.3/attention/self/query   (the called modules, outermost first)
    onnxport.tagged_by  how the tag was found: exporter, parameter, replaced, inputs, name, neighbours

The root is the exported model itself (`ExportWrapper.model`, the module the user handed to
`export` or that onnxport loaded), so paths match the user's own `named_modules()`; "" is that
root. Ops onnxport's ExportWrapper adds around it (int32 casts, pooling, Dense, normalize) sit
under `<onnxport>`. A class path lists the classes of the modules whose forward ran, so
containers that are never called (ModuleList, ModuleDict) do not appear in it. Nodes the
exporter recorded no module for are glue: they stay untagged and are counted separately,
never filed under the root.

Where tags come from at export (no second forward pass): the dynamo exporter's
`pkg.torch.onnx.name_scopes` on each node; the TorchScript exporter's scoped node names
(`/model/encoder/layer.0/attention/self/query/MatMul`), resolved against `named_modules()`
of the wrapper, which also gives the classes; TorchScript's Identity nodes that alias a
de-duplicated parameter are tagged with the module that owns the parameter they are named
after.

How tags follow optimize and quantize (`retag(original, new)`), first rule that applies:
  1. a node with the same name, or the same op and outputs, as an original node keeps its tags;
  2. a new node whose outputs exist in the original graph replaced the original nodes that
     computed them: walk back from those producers through removed nodes whose outputs feed
     only nodes already in the region, stopping at values the new graph still has; it takes
     the common module of that region (nodes claimed by several new nodes are left out of
     the vote, so a mask shared by all layers does not drag a layer's Attention to the root);
  3. otherwise, the longest original node name its name starts with (`<orig>_quant`,
     `fused <orig>`), unless it is named after one of its input tensors;
  4. otherwise, the removed original nodes that consumed its inputs (onnxruntime's
     DynamicQuantizeLinear of a LayerNorm output goes to the MatMuls it feeds);
  5. otherwise, the common module of its tagged consumers, else of its tagged producers.
What none of these reach stays glue. ONNX side only (onnx and numpy): the index of an
export wrapper's modules is built from PyTorch by `convert.module_tags.module_index`.
"""

from __future__ import annotations

import ast
import collections
import dataclasses
import fnmatch
import json
import re
from pathlib import Path
from typing import Iterable, Sequence

from ..core.artifact import Artifact
from ..core.files import write_json_atomic
from ..core.model_files import MODEL_FILE
from ..errors import ArtifactError, InputError
from .onnx_files import FUSED_DOMAIN, load_onnx, save_onnx

KEY_MODULE = "onnxport.module"
KEY_CLASS = "onnxport.class"
KEY_SCOPE = "onnxport.scope"
KEY_TAGGED_BY = "onnxport.tagged_by"
KEYS = (KEY_MODULE, KEY_CLASS, KEY_SCOPE, KEY_TAGGED_BY)
WRAPPER = "<onnxport>"
SIDECAR = "hierarchy.json"
# The nodes that do the arithmetic; the coverage figure counts these.
COMPUTE_OPS = frozenset({"MatMul", "Gemm", "Add", "LayerNormalization", "Softmax"})
_DYNAMO_SCOPES = "pkg.torch.onnx.name_scopes"
_DYNAMO_CLASSES = "pkg.torch.onnx.class_hierarchy"
# A module called twice gets `_1` (TorchScript) or `@1` (dynamo) on its second scope.
_REPEATED_CALL = re.compile(r"^(.+?)(?:_|@)\d+$")
_NAME_BOUNDARY = re.compile(r"[_/: ]")
# Integer initializers are shapes, indices and buffers such as position_ids, not weights.
_INTEGER_TYPES = {6, 7, 12, 13, 9}  # int32, int64, uint32, uint64, bool


@dataclasses.dataclass(frozen=True)
class Tag:
    """Where a node comes from: the called modules from the root down, and their classes.

    `scope` holds each module's name relative to the called module around it; the backbone
    root ("") has no entry of its own, the wrapper root is `<onnxport>`.
    """

    scope: tuple[str, ...]
    classes: tuple[str, ...]

    @property
    def module(self) -> str:
        return ".".join(self.scope)

    @property
    def class_path(self) -> str:
        return "/".join(self.classes)

    @property
    def depth(self) -> int:
        return len(self.classes) - 1

    def level(self, depth: int) -> "Tag":
        """The enclosing called module at `depth` (0 = root), or self when it is shallower."""
        keep = min(depth, self.depth) + 1
        in_scope = keep - (len(self.classes) - len(self.scope))
        return Tag(self.scope[:max(in_scope, 0)], self.classes[:keep])

    def chain(self) -> list["Tag"]:
        return [self.level(d) for d in range(self.depth + 1)]


def common_tag(tags: Iterable[Tag | None]) -> Tag | None:
    """The deepest module that contains all of `tags` (None when there are none)."""
    tags = list({t for t in tags if t is not None})
    if not tags:
        return None
    result = None
    for depth in range(min(t.depth for t in tags) + 1):
        level = tags[0].level(depth)
        if any(t.level(depth) != level for t in tags):
            break
        result = level
    if result is None:  # backbone and wrapper ops together: only the wrapper holds both
        wrapper = next(t for t in tags if len(t.scope) == len(t.classes))
        result = wrapper.level(0)
    return result


# ------------------------------------------------------------------ reading and writing tags


def read_tag(node) -> Tag | None:
    meta = {p.key: p.value for p in node.metadata_props if p.key in (KEY_SCOPE, KEY_CLASS)}
    if not meta.get(KEY_CLASS):
        return None
    scope = meta.get(KEY_SCOPE, "")
    return Tag(tuple(scope.split("/")) if scope else (), tuple(meta[KEY_CLASS].split("/")))


def tagged_by(node) -> str | None:
    return next((p.value for p in node.metadata_props if p.key == KEY_TAGGED_BY), None)


def clear_tag(node) -> None:
    others = [(p.key, p.value) for p in node.metadata_props if p.key not in KEYS]
    if len(others) != len(node.metadata_props):
        del node.metadata_props[:]
        for key, value in others:
            entry = node.metadata_props.add()
            entry.key, entry.value = key, value


def write_tag(node, tag: Tag, how: str) -> None:
    clear_tag(node)
    for key, value in ((KEY_MODULE, tag.module), (KEY_CLASS, tag.class_path), (KEY_SCOPE, "/".join(tag.scope)),
                       (KEY_TAGGED_BY, how)):
        entry = node.metadata_props.add()
        entry.key, entry.value = key, value


def node_keys(model) -> list[str]:
    """Each node's name, or for an unnamed one `<op>_<index>`, the name onnxruntime's profiler
    gives it: onnxruntime numbers the nodes in file order after turning Constant nodes into
    initializers, so Constants do not count."""
    keys, index = [], 0
    for node in model.graph.node:
        keys.append(node.name or f"{node.op_type}_{index}")
        if not (node.op_type == "Constant" and node.domain in ("", "ai.onnx")):
            index += 1
    return keys


def is_tagged(model) -> bool:
    return any(read_tag(node) is not None for node in model.graph.node)


# ------------------------------------------------------------------ tagging an export


@dataclasses.dataclass
class ModuleIndex:
    """Every called module of an export wrapper: its tag, and its called parent, by wrapper path."""

    tags: dict[str, Tag]
    parents: dict[str, str]

    def __post_init__(self) -> None:
        self._children: dict[str, list[str]] = collections.defaultdict(list)
        for path, parent in self.parents.items():
            self._children[parent].append(path)

    def children(self, parent: str) -> list[str]:
        return self._children.get(parent, [])

    def child(self, parent: str, name: str) -> str | None:
        """The called module under `parent` a TorchScript scope component names.

        TorchScript spells a component relative to the enclosing called module but drops
        uncalled containers (ModuleDict `d.a` appears as `a`), so match the exact relative
        name first, then a dotted suffix, and only when it is unambiguous.
        """
        kids = self.children(parent)
        repeated = _REPEATED_CALL.match(name)
        for wanted in (name, repeated.group(1) if repeated else None):
            if wanted is None:
                continue
            exact = [k for k in kids if relative_path(k, parent) == wanted]
            if len(exact) == 1:
                return exact[0]
            suffix = [k for k in kids if k.endswith("." + wanted)]
            if len(suffix) == 1:
                return suffix[0]
        return None


def relative_path(path: str, parent: str) -> str:
    return path[len(parent) + 1:] if parent else path


def tag_exported(model, index: ModuleIndex) -> dict[str, int]:
    """Tag the nodes of a fresh torch.onnx export in place; returns counts per source and glue."""
    initializers = {t.name for t in model.graph.initializer}
    counts: collections.Counter = collections.Counter()
    for node in model.graph.node:
        clear_tag(node)
        meta = {p.key: p.value for p in node.metadata_props if p.key in (_DYNAMO_SCOPES, _DYNAMO_CLASSES)}
        how = "exporter"
        if _DYNAMO_SCOPES in meta:
            tag = _dynamo_tag(meta, index)
        elif node.name.startswith("/"):
            tag = _torchscript_tag(node.name, index)
        elif node.op_type == "Identity" and node.input and node.input[0] in initializers and node.output:
            # TorchScript de-duplicates equal weights and re-creates each one as an
            # Identity named after the parameter it stands for.
            tag, how = index.tags.get(node.output[0].rpartition(".")[0]), "parameter"
        else:
            tag = None
        if tag is None:
            counts["glue"] += 1
            continue
        write_tag(node, tag, how)
        counts[how] += 1
    return dict(counts)


def _torchscript_tag(name: str, index: ModuleIndex) -> Tag | None:
    current = ""
    for component in name.split("/")[1:-1]:
        child = index.child(current, component)
        if child is None:
            if current == "":  # an unknown outermost scope: better glue than a guess
                return None
            break  # the op ran at least inside `current`
        current = child
    return index.tags.get(current)


def _dynamo_tag(meta: dict, index: ModuleIndex) -> Tag | None:
    try:
        scopes = ast.literal_eval(meta[_DYNAMO_SCOPES])
        classes = ast.literal_eval(meta.get(_DYNAMO_CLASSES, "[]"))
    except (ValueError, SyntaxError):
        return None
    # ['', 'model', 'model.encoder', ..., 'op_name']; a node outside any module (symbolic
    # sizes) starts with a placeholder instead of ''.
    if len(scopes) < 2 or scopes[0] != "":
        return None
    path = scopes[-2]
    tag = index.tags.get(path)
    if tag is not None:
        recorded = tuple(c.rsplit(".", 1)[-1] for c in classes[:-1])
        if len(recorded) >= len(tag.classes) and recorded[-1] == tag.classes[-1]:
            return Tag(tag.scope, recorded[len(recorded) - len(tag.classes):])
        return tag
    while path and path not in index.tags:
        repeated = _REPEATED_CALL.match(path)
        path = repeated.group(1) if repeated and repeated.group(1) in index.tags else path.rpartition(".")[0]
    return index.tags.get(path)


# ------------------------------------------------------------------ carrying tags to rewritten graphs


def retag(original, new) -> dict[str, int]:
    """Carry the tags of `original` onto `new` (an optimized or quantized rewrite of it), in place.

    Returns how many nodes each rule tagged; empty when `original` has no tags.
    """
    old = list(original.graph.node)
    old_tags = [read_tag(n) for n in old]
    if not any(old_tags):
        return {}
    old_how = [tagged_by(n) or "exporter" for n in old]
    by_name = {n.name: i for i, n in enumerate(old) if n.name}
    by_outputs = {(n.op_type, tuple(n.output)): i for i, n in enumerate(old)}
    producer = {v: i for i, n in enumerate(old) for v in n.output if v}
    consumers: dict[str, list[int]] = collections.defaultdict(list)
    for i, n in enumerate(old):
        for v in n.input:
            if v:
                consumers[v].append(i)
    graph_outputs = {o.name for o in original.graph.output}
    weights = {t.name for t in original.graph.initializer}
    # TorchScript's Identity copies of a shared weight only forward it; they vote for nothing.
    aliases = {i for i, n in enumerate(old) if n.op_type == "Identity" and n.input and n.input[0] in weights}

    counts: collections.Counter = collections.Counter()
    kept: set[int] = set()
    pending = []
    for node in new.graph.node:
        i = by_name.get(node.name) if node.name else None
        if i is None:
            i = by_outputs.get((node.op_type, tuple(node.output)))
        if i is not None:
            kept.add(i)
            if old_tags[i] is None:
                clear_tag(node)
                counts["glue"] += 1
            else:
                write_tag(node, old_tags[i], old_how[i])
                counts["unchanged"] += 1
        elif read_tag(node) is not None:
            counts["unchanged"] += 1  # the rewriting tool carried them itself
        else:
            pending.append(node)
    removed = set(range(len(old))) - kept
    # A value the new graph still has is computed by someone there: a region ends at it.
    available = ({v for n in new.graph.node for v in n.output} | {i.name for i in new.graph.input}
                 | {t.name for t in new.graph.initializer})

    regions, claims, named = {}, {}, {}
    for k, node in enumerate(pending):
        region = _replaced_region(node, old, removed, producer, consumers, graph_outputs, available)
        if region:
            regions[k] = region
            continue
        # `<tensor>_QuantizeLinear` is named after what it quantizes, not after a node.
        after_tensor = any(v and node.name.startswith(v) for v in node.input)
        index = None if after_tensor else _prefix_match(node.name, by_name, old_tags)
        if index is not None:
            named[k] = index
        else:
            claims[k] = {c for v in node.input if v for c in consumers.get(v, ()) if c in removed and c not in aliases}
    votes = {**_exclusive(regions), **_exclusive(claims)}
    rest = []
    for k, node in enumerate(pending):
        if k in named:
            tag, how = old_tags[named[k]], "name"
        else:
            tag, how = common_tag(old_tags[i] for i in votes.get(k, ())), ("replaced" if k in regions else "inputs")
        if tag is None:
            rest.append(node)
        else:
            write_tag(node, tag, how)
            counts[how] += 1
    counts["neighbours"] += _tag_from_neighbours(new, rest)
    counts["glue"] += sum(read_tag(n) is None for n in rest)
    return {k: v for k, v in counts.items() if v}


def _replaced_region(node, old, removed, producer, consumers, graph_outputs, available) -> set[int]:
    """The removed original nodes that computed `node`'s outputs from its inputs."""
    stop = set(node.input) | available
    region = {producer[v] for v in node.output if v in producer and producer[v] in removed}
    grew = True
    while grew:
        grew = False
        for i in list(region):
            for v in old[i].input:
                p = producer.get(v) if v and v not in stop else None
                if p is None or p in region or p not in removed:
                    continue
                outputs = [o for o in old[p].output if o]
                # Only nodes whose results are used inside the region were fused away with
                # it; a shared mask or a residual input belongs to someone else.
                if any(o in graph_outputs for o in outputs):
                    continue
                if all(c in region for o in outputs for c in consumers.get(o, ())):
                    region.add(p)
                    grew = True
    return region


def _exclusive(groups: dict[int, set[int]]) -> dict[int, set[int]]:
    """Each group without the members other groups claim too (all of it if nothing is left)."""
    seen = collections.Counter(i for members in groups.values() for i in members)
    return {k: ({i for i in members if seen[i] == 1} or members) for k, members in groups.items()}


def _prefix_match(name: str, by_name: dict[str, int], tags: list) -> int | None:
    best = None
    for candidate in [name] + [name[m.end():] for m in re.finditer(" ", name)]:
        ends = [m.start() for m in _NAME_BOUNDARY.finditer(candidate)] + [len(candidate)]
        for end in ends:
            index = by_name.get(candidate[:end])
            if index is not None and tags[index] is not None and (best is None or end > best[0]):
                best = (end, index)
    return best[1] if best else None


def _tag_from_neighbours(model, nodes: list) -> int:
    producer = {v: n for n in model.graph.node for v in n.output if v}
    users: dict[str, list] = collections.defaultdict(list)
    for n in model.graph.node:
        for v in n.input:
            users[v].append(n)
    tagged = 0
    progress = True
    while progress:
        progress = False
        for node in nodes:
            if read_tag(node) is not None:
                continue
            tag = common_tag(read_tag(u) for v in node.output for u in users.get(v, ()))
            if tag is None:
                tag = common_tag(read_tag(producer[v]) for v in node.input if v in producer)
            if tag is not None:
                write_tag(node, tag, "neighbours")
                tagged += 1
                progress = True
    return tagged


# ------------------------------------------------------------------ summaries


def coverage(model) -> dict:
    """Share of compute nodes (MatMul, Gemm, Add, LayerNormalization, Softmax, com.microsoft
    fused ops) that carry a module, and how the tags were found."""
    compute = [n for n in model.graph.node if n.op_type in COMPUTE_OPS or n.domain == FUSED_DOMAIN]
    tagged = [n for n in compute if read_tag(n) is not None]
    untagged = collections.Counter(n.op_type for n in compute if read_tag(n) is None)
    return {
        "compute_nodes": len(compute),
        "tagged_compute_nodes": len(tagged),
        "share": round(len(tagged) / len(compute), 4) if compute else 1.0,
        "untagged_compute_ops": dict(untagged),
        "tagged_by": dict(collections.Counter(tagged_by(n) for n in model.graph.node if read_tag(n) is not None)),
    }


def _parameter_tensors(model) -> dict[str, int]:
    """Weight-like tensors and their element counts: non-integer initializers with more than
    one element, and TorchScript's Identity aliases of them."""
    sizes = {}
    for tensor in model.graph.initializer:
        count = 1
        for d in tensor.dims:
            count *= d
        if tensor.data_type not in _INTEGER_TYPES and count > 1:
            sizes[tensor.name] = count
    for node in model.graph.node:
        if node.op_type == "Identity" and node.input and node.input[0] in sizes and node.output:
            sizes[node.output[0]] = sizes[node.input[0]]
    return sizes


def module_tree(model, depth: int | None = None) -> dict:
    """Per module: node count, op types and parameter count, each including its submodules.

    A module's parameters are the elements of the weights (see `_parameter_tensors`) that
    only its nodes use; a weight that glue uses belongs to no module.
    """
    nodes = list(model.graph.node)
    tags = [read_tag(node) for node in nodes]
    entries: dict[Tag, dict] = {}
    order: dict[Tag, int] = {}
    glue: collections.Counter = collections.Counter()
    for position, (node, tag) in enumerate(zip(nodes, tags)):
        if tag is None:
            glue[node.op_type] += 1
            continue
        # List modules in the order they compute; TorchScript puts weight aliases first.
        alias = tagged_by(node) == "parameter"
        for level in tag.chain():
            entry = entries.get(level)
            if entry is None:
                entry = entries[level] = {"nodes": 0, "own_nodes": 0, "op_types": collections.Counter(),
                                          "parameters": 0}
            if level not in order or (not alias and order[level] >= len(nodes)):
                order[level] = position + (len(nodes) if alias else 0)
            entry["nodes"] += 1
            entry["op_types"][node.op_type] += 1
        entries[tag]["own_nodes"] += 1
    sizes = _parameter_tensors(model)
    owners: dict[str, list] = collections.defaultdict(list)
    for node, tag in zip(nodes, tags):
        if node.op_type == "Identity" and node.input and node.input[0] in sizes:
            continue  # an alias, not a use: its own consumers count
        for v in node.input:
            if v in sizes:
                owners[v].append(tag)
    unowned = 0
    for name, users in owners.items():
        owner = None if any(u is None for u in users) else common_tag(users)
        if owner is None:
            unowned += sizes[name]
            continue
        for level in owner.chain():
            entries[level]["parameters"] += sizes[name]
    rows = []
    for tag in sorted(entries, key=lambda t: tuple(order[level] for level in t.chain())):
        if depth is not None and tag.depth > depth:
            continue
        entry = entries[tag]
        rows.append({"module": tag.module, "class": tag.classes[-1], "class_path": tag.class_path,
                     "depth": tag.depth, "nodes": entry["nodes"], "own_nodes": entry["own_nodes"],
                     "op_types": dict(entry["op_types"].most_common()), "parameters": entry["parameters"]})
    return {
        "modules": rows,
        "nodes": len(model.graph.node),
        "tagged_nodes": len(model.graph.node) - sum(glue.values()),
        "glue_nodes": sum(glue.values()),
        "glue_op_types": dict(glue.most_common()),
        "parameters": sum(sizes[name] for name in owners),
        "unowned_parameters": unowned,
        "coverage": coverage(model),
    }


def node_modules(model) -> dict[str, str | None]:
    """Node key (see `node_keys`) -> module path, None for glue."""
    result = {}
    for key, node in zip(node_keys(model), model.graph.node):
        tag = read_tag(node)
        result[key] = None if tag is None else tag.module
    return result


# ------------------------------------------------------------------ selecting nodes by module


def module_matches(module: str, pattern: str) -> bool:
    """A glob on the dotted path (`encoder.layer.*.attention`), or a regex after `re:`.
    A module matches when it or one of its enclosing modules does."""
    parts = module.split(".")
    candidates = {".".join(parts[:i]) for i in range(1, len(parts) + 1)} | {module}
    if pattern.startswith("re:"):
        regex = re.compile(pattern[3:])
        return any(regex.fullmatch(c) for c in candidates)
    return any(fnmatch.fnmatchcase(c, pattern) for c in candidates)


def nodes_matching_modules(model, patterns: str | Sequence[str]) -> list[str]:
    """Names of the nodes whose module path matches any of `patterns` (see `module_matches`).

    Raises InputError when the model has no tags or a pattern matches no module."""
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    if not is_tagged(model):
        raise InputError("this model has no module tags, so modules cannot be selected; "
                         "re-export it without --no-hierarchy")
    for pattern in patterns:
        if pattern.startswith("re:"):
            try:
                re.compile(pattern[3:])
            except re.error as error:
                raise InputError(f"module pattern {pattern!r} is not a valid regex: {error}") from None
    names, matched = [], set()
    modules = set()
    for node in model.graph.node:
        tag = read_tag(node)
        if tag is None:
            continue
        modules.add(tag.module)
        hits = [p for p in patterns if module_matches(tag.module, p)]
        if hits and node.name:
            names.append(node.name)
            matched.update(hits)
    missing = [p for p in patterns if p not in matched]
    if missing:
        examples = ", ".join(sorted(m for m in modules if m.count(".") <= 3)[:6])
        raise InputError(f"no module matches {', '.join(map(repr, missing))}; module paths look like: {examples} "
                         "(globs such as 'encoder.layer.*.attention', or 're:' and a regex)")
    return names


# ------------------------------------------------------------------ the artifact's sidecar


def write_sidecar(folder: str | Path, file_name: str, model) -> Path:
    """Record `file_name`'s module tree and node -> module map in FOLDER/hierarchy.json (atomic)."""
    path = Path(folder) / SIDECAR
    data = None
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except ValueError:
            data = None  # corrupt: rebuilt from the model files as they are recorded again
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        data = {"format_version": 1, "root": "'' is the exported model; paths as its named_modules() spells them",
                "wrapper": WRAPPER, "keys": list(KEYS), "files": {}}
    tree = module_tree(model)
    data["files"][file_name] = {"tree": tree, "nodes": node_modules(model)}
    write_json_atomic(path, data, indent=1)
    return path


def carry_over(source_path: str | Path, model) -> dict[str, int]:
    """Retag `model` (in memory) from the tagged file it was made from; {} if that has no tags."""
    import onnx

    return retag(onnx.load(str(source_path), load_external_data=False), model)


def carry_over_file(artifact, source_name: str, target_name: str) -> dict[str, int]:
    """Retag the artifact's `target_name` from `source_name` in place (atomic rewrite) and record
    it in the sidecar. Does nothing when the source has no tags."""
    import onnx

    source = onnx.load(str(artifact.model_path(source_name)), load_external_data=False)
    if not is_tagged(source):
        return {}
    target_path = artifact.model_path(target_name)
    model = onnx.load(str(target_path))
    counts = retag(source, model)
    save_onnx(model, target_path)
    write_sidecar(artifact.path, target_name, model)
    return counts


def record(artifact, file_name: str, model) -> None:
    """Add `file_name` to the sidecar when the model carries tags."""
    if is_tagged(model):
        write_sidecar(artifact.path, file_name, model)


def inspect_hierarchy(path: str | Path, depth: int | None = None) -> dict:
    """The module tree of a .onnx file, or of an artifact's model.onnx, for `inspect --hierarchy`."""
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path} does not exist; pass a .onnx file or an artifact directory")
    if path.is_dir():
        path = Artifact(path).model_path(MODEL_FILE)
    model = load_onnx(path)
    if not is_tagged(model):
        raise InputError(f"{path} carries no module tags (exported with --no-hierarchy, or not by onnxport); "
                         "re-export it with `onnxport export` to get them")
    return {"path": str(path), **module_tree(model, depth)}
