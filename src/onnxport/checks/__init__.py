"""checks: is a model file right? Parity with a reference over a shape matrix, padding
invariance, and quality metrics for reduced-precision files.

`parity.verify(artifact, reference=...)` takes its reference as an argument (convert
builds the PyTorch one); it never imports torch. Imports runtime and core.
"""
