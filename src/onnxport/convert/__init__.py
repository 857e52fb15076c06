"""convert: the torch side, and the only layer that may import torch, transformers,
sentence-transformers or safetensors.

Loading sources (`sources`), the exportable wrapper and its dummy batch (`wrapper`),
`torch.onnx.export` and the artifact it writes (`exporter`), module tags from
`named_modules()` (`module_tags`), and the PyTorch / sentence-transformers references that
verify and optimize judge against (`references`). Nothing here imports torch at module
level, so `requirements.require_export` can answer with the install command first.
"""
