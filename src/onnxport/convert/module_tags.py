"""The torch side of module tags: index the called modules of an export wrapper.

`graph.tags` does everything on the ONNX side (reading and writing tags, carrying them
through optimize and quantize); this module reads `named_modules()` of the wrapper at
export time and hands `graph.tags.tag_exported` the index it resolves scopes against.
"""

from __future__ import annotations

from ..graph.tags import WRAPPER, ModuleIndex, Tag, relative_path


def module_index(wrapper, backbone) -> ModuleIndex:
    """Tags for every called module of `wrapper` (an nn.Module holding `backbone`), from
    `named_modules()`: module paths relative to the backbone, class names per level."""
    import torch

    modules = dict(wrapper.named_modules())
    backbone_path = next((path for path, module in modules.items() if module is backbone and path), None)
    if backbone_path is None:
        raise ValueError("the backbone is not a submodule of the wrapper")

    def called(module) -> bool:  # ModuleList/ModuleDict have no forward and never become a scope
        return type(module).forward is not torch.nn.Module.forward

    def inside(path: str) -> bool:
        return path == backbone_path or path.startswith(backbone_path + ".")

    tags: dict[str, Tag] = {}
    parents: dict[str, str] = {}
    for path, module in modules.items():
        if not called(module):
            continue
        parts = path.split(".") if path else []
        chain = [p for p in [""] + [".".join(parts[:i]) for i in range(1, len(parts) + 1)] if called(modules[p])]
        if len(chain) > 1:
            parents[path] = chain[-2]
        if inside(path):
            chain = [p for p in chain if inside(p)]
            scope: tuple[str, ...] = ()
        else:
            scope = (WRAPPER,)
        scope += tuple(relative_path(child, parent) for parent, child in zip(chain, chain[1:]))
        tags[path] = Tag(scope, tuple(type(modules[p]).__name__ for p in chain))
    return ModuleIndex(tags, parents)


