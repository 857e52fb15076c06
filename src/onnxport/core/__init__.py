"""core: plain data and files shared by every layer.

No torch, no onnxruntime, no onnx here: the task and pooling enums, the export spec, the
artifact directory and its manifest, the table of model files, file helpers (atomic
writes, hashing, error text), the one BIO/BIOES span decoder and the built-in texts.
"""
