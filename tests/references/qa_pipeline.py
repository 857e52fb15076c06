"""Run transformers' question-answering pipeline (removed in transformers 5.3; the tests run
this file in a side virtualenv with transformers 5.2) and print its answers as JSON.

stdin: {"model": FOLDER, "cases": [{"question", "context", **pipeline options}]}
stdout: one answer (a dict) or a list of answers per case, as the pipeline returns them.
"""

import json
import sys

from transformers import pipeline


def main() -> None:
    request = json.load(sys.stdin)
    answerer = pipeline("question-answering", model=request["model"], tokenizer=request["model"], device="cpu")
    results = [answerer(**case) for case in request["cases"]]
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
