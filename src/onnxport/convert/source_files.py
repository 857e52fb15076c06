"""Reading a source model's own files safely: JSON that may be damaged, safetensors headers,
and which weight files to load (pickle checkpoints only when the user allows them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..core.messages import first_line
from ..errors import ModelLoadError

SAFE_WEIGHT_PATTERNS = ("*.safetensors", "*.safetensors.index.json")
PICKLE_WEIGHT_PATTERNS = ("pytorch_model*.bin", "*.bin.index.json", "*.pt", "*.pth", "*.ckpt")


def check_weights(folder: Path, *, allow_pickle: bool) -> list[Path]:
    """The weight files to load, refusing pickle checkpoints unless allowed."""
    safe = sorted(p for pattern in SAFE_WEIGHT_PATTERNS for p in folder.glob(pattern))
    if safe:
        return [p for p in safe if p.suffix == ".safetensors"]
    pickled = sorted(p for pattern in PICKLE_WEIGHT_PATTERNS for p in folder.glob(pattern))
    if pickled:
        if not allow_pickle:
            raise ModelLoadError(
                f"{folder} has only pickle weights ({pickled[0].name}); loading pickle can run "
                "arbitrary code. Convert them to safetensors, or pass --allow-pickle if you trust the file"
            )
        return [p for p in pickled if not p.name.endswith(".json")]
    raise ModelLoadError(
        f"{folder} has no weights (no *.safetensors or pytorch_model.bin); "
        "save the model with `model.save_pretrained(folder)` first"
    )


def read_json(path: Path, expected: type, fix: str) -> Any:
    """A JSON file of the source model; a damaged, truncated or wrong-shaped one is a
    ModelLoadError naming the file and `fix`."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelLoadError(f"{path} is not valid JSON ({first_line(error)}): it is damaged or cut short; "
                             f"{fix}") from None
    except OSError as error:
        raise ModelLoadError(f"cannot read {path}: {first_line(error)}") from None
    if not isinstance(data, expected):
        wanted = "an object" if expected is dict else "a list"
        raise ModelLoadError(f"{path} holds a JSON {type(data).__name__}, not {wanted}; {fix}")
    return data


def check_safetensors(files: list[Path]) -> None:
    """Open each safetensors file's header, so a truncated or damaged file is named, not a traceback."""
    from safetensors import safe_open

    for path in files:
        if path.suffix != ".safetensors":
            continue
        try:
            with safe_open(str(path), framework="pt") as handle:
                handle.keys()
        except Exception as error:  # safetensors raises its own SafetensorError (an Exception)
            raise ModelLoadError(f"{path} is not a readable safetensors file ({first_line(error)}): it is "
                                 "damaged or cut short; download or save the model again") from None
