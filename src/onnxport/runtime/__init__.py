"""runtime: what `pip install onnxport` serves with, from the artifact directory alone.

An onnxruntime session (`session`), the artifact's tokenizer (`tokenization`) and the task
pipelines (`pipelines`: Embedder, TokenClassifier, SequenceClassifier, Reranker). Imports core only;
never torch, transformers or the export side.
"""
