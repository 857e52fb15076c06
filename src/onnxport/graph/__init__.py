"""graph: ONNX file in, ONNX file out, no torch.

Reading and saving files (`onnx_files`), describing them (`inspection`), opsets and the
onnxruntime versions that run them (`opsets`), PyTorch module tags on nodes and their
trip through rewrites (`tags`), onnxruntime's transformer fusions (`optimizer`) and
accuracy-guarded int8 (`quantizer`). Imports checks, runtime and core.
"""
