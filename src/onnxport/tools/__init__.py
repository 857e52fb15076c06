"""tools: what people run. The `onnxport` command (`cli`, tables in `render`), the one
reader of text files and writer of results (`textio`), per-module profiling (`profile`)
and the benchmark (`bench`). May import every layer; nothing imports tools.
"""
