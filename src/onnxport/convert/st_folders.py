"""Reading sentence-transformers folders, in every format the library has written (v2 to v6).

What changed over the versions, and what this module accepts:

* `modules.json` names each module by its class path: `sentence_transformers.models.Pooling`
  (v2-v5) or `sentence_transformers.sentence_transformer.modules.pooling.Pooling`,
  `sentence_transformers.base.modules.transformer.Transformer` and friends (v6). Only the
  class name decides.
* Pooling config: one boolean flag per mode (`pooling_mode_mean_tokens`, ...; v2-v5) or
  `pooling_mode` as a name or a list of names (v6), with `word_embedding_dimension` or
  `embedding_dimension`. No mode set means mean, as sentence-transformers reads it.
* The Transformer's own config: `sentence_bert_config.json` (or an older
  `sentence_<arch>_config.json`) with `max_seq_length` and `do_lower_case` (v2-v5); v6 keeps
  the length in the tokenizer's `model_max_length` and adds `transformer_task`.
* Dense weights in `model.safetensors` (v3+) or `pytorch_model.bin` (v2, pickle: allowed
  only with --allow-pickle).
* `config_sentence_transformers.json`: `prompts`, `default_prompt_name` (v2.4+), and
  `model_type` (v5+), which tells a CrossEncoder or SparseEncoder folder apart.
* SparseEncoder (SPLADE, v5+): an `MLMTransformer` (v5) or a `Transformer` with
  `transformer_task: fill-mask` (v6), then `SpladePooling` (`pooling_strategy` max or sum,
  `activation_function` relu or log1p_relu); `max_active_dims` in the model config.

Anything whose output onnxport could not reproduce exactly is refused with a reason.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..core.spec import Pooling
from ..errors import ExportError, ModelLoadError
from .source_files import check_safetensors, read_json

ST_RESAVE = "save the model again with `SentenceTransformer.save(folder)`"

# sentence-transformers' pooling mode names (v6 `pooling_mode`), and the v2-v5 flags that mean them.
_POOLING_MODES = {
    "cls": Pooling.CLS,
    "max": Pooling.MAX,
    "mean": Pooling.MEAN,
    "mean_sqrt_len_tokens": Pooling.MEAN_SQRT_LEN,
    "weightedmean": Pooling.WEIGHTED_MEAN,
    "lasttoken": Pooling.LAST_TOKEN,
}
_LEGACY_POOLING_FLAGS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
# The Transformer module's config file, newest name first (sentence-transformers tries them in this order).
_TRANSFORMER_CONFIG_FILES = ("sentence_bert_config.json", "sentence_roberta_config.json",
                             "sentence_distilbert_config.json", "sentence_camembert_config.json",
                             "sentence_albert_config.json", "sentence_xlm-roberta_config.json",
                             "sentence_xlnet_config.json")
_SCORE_ACTIVATIONS = {"Sigmoid": "sigmoid", "Identity": "identity"}
_DENSE_ACTIVATIONS = {"Tanh", "Identity", "ReLU", "GELU", "Sigmoid"}
# Modules that do nothing at inference.
_PASS_THROUGH = {"Dropout"}
_SPLADE_POOLING = ("max", "sum")
_SPLADE_ACTIVATIONS = ("relu", "log1p_relu")


@dataclasses.dataclass
class DenseLayer:
    """A sentence-transformers Dense module: Linear + activation, applied after pooling."""

    weight: Any
    bias: Any | None
    activation: str


@dataclasses.dataclass
class SentenceTransformerConfig:
    """What a sentence-transformers folder says about turning a text into one vector."""

    pooling: Pooling | None  # None for a SparseEncoder, whose pooling is `splade`
    normalize: bool
    max_seq_length: int | None
    dense_layers: list[DenseLayer]
    transformer_dir: Path
    do_lower_case: bool = False
    prompts: dict[str, str] = dataclasses.field(default_factory=dict)
    default_prompt_name: str | None = None
    include_prompt: bool = True
    saved_by: str | None = None  # the sentence-transformers version that wrote the folder, when recorded
    splade: tuple[str, str] | None = None  # SparseEncoder: (pooling strategy, activation function)
    max_active_dims: int | None = None  # SparseEncoder: keep this many largest weights per text

    @property
    def default_prompt(self) -> str:
        """The text sentence-transformers puts before every text by default ('' for none)."""
        return self.prompts.get(self.default_prompt_name, "") if self.default_prompt_name else ""

    def describe(self) -> dict:
        """The facts the manifest keeps (prompts drive the runtime, the rest is for people)."""
        sparse = {"splade": list(self.splade), "max_active_dims": self.max_active_dims} if self.splade else {}
        return {
            "pooling": self.pooling.value if self.pooling else None, "normalize": self.normalize,
            "dense_layers": len(self.dense_layers), **sparse,
            "max_seq_length": self.max_seq_length, "do_lower_case": self.do_lower_case,
            "prompts": dict(self.prompts), "default_prompt_name": self.default_prompt_name,
            "include_prompt": self.include_prompt, "saved_by": self.saved_by,
        }


def read_sentence_transformers_config(folder: Path, *, allow_pickle: bool = False) -> SentenceTransformerConfig | None:
    """Parse modules.json and friends. None when the folder is not a sentence-transformers
    embedding model: no modules.json, or a CrossEncoder (a sequence classifier underneath, which
    the caller exports as text-ranking or sequence-classification)."""
    modules_file = folder / "modules.json"
    if not modules_file.exists():
        return None
    model_config = _model_config(folder)
    model_type = model_config.get("model_type")
    if model_type == "CrossEncoder":
        return None
    modules = read_json(modules_file, list, ST_RESAVE)
    transformer_dir, (transformer_config, transformer_file) = folder, _transformer_config(folder)
    pooling, include_prompt, normalize, dense_layers, splade = None, True, False, [], None
    for index, entry in enumerate(modules):
        if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
            raise ModelLoadError(f"{modules_file}: module #{index} is not an object with a \"type\"; {ST_RESAVE}")
        kind = entry["type"].rsplit(".", 1)[-1]
        module_dir = folder / entry.get("path", "")
        if kind in ("Transformer", "MLMTransformer"):
            transformer_dir, (transformer_config, transformer_file) = module_dir, _transformer_config(module_dir)
        elif kind == "SpladePooling":
            splade = _read_splade(module_dir / "config.json")
        elif kind == "Pooling":
            if pooling is not None:
                raise ExportError(f"{modules_file} has two Pooling modules; onnxport exports one")
            pooling, include_prompt = _read_pooling(module_dir / "config.json")
        elif kind == "Normalize":
            normalize = True
        elif kind == "Dense":
            if pooling is None:
                raise ExportError(f"{modules_file}: a Dense module before Pooling (per token) is not supported yet")
            dense_layers.append(_read_dense(module_dir, allow_pickle))
        elif kind not in _PASS_THROUGH:
            raise ExportError(
                f"sentence-transformers module {entry['type']} ({modules_file}) is not supported yet; "
                "supported: Transformer, Pooling, Dense, Normalize, Dropout, and for SparseEncoder (SPLADE) "
                "folders MLMTransformer and SpladePooling")
    prompts, default_prompt_name = _prompts(folder, model_config)
    common = dict(do_lower_case=bool(transformer_config.get("do_lower_case", False)), prompts=prompts,
                  default_prompt_name=default_prompt_name,
                  saved_by=(model_config.get("__version__") or {}).get("sentence_transformers"))
    if model_type == "SparseEncoder" or splade is not None:
        if splade is None or pooling is not None or dense_layers or normalize:
            raise ExportError(f"{folder} is a SparseEncoder whose modules onnxport cannot reproduce yet; supported: "
                              "a masked-LM Transformer followed by SpladePooling, nothing else")
        return SentenceTransformerConfig(
            None, False, _max_seq_length(transformer_config, transformer_file), [], transformer_dir,
            splade=splade, max_active_dims=_max_active_dims(folder, model_config), **common)
    if pooling is None:
        task = transformer_config.get("transformer_task", "feature-extraction")
        if task == "sequence-classification":
            return None  # a cross-encoder saved without model_type: a sequence classifier underneath
        if task != "feature-extraction":
            raise ExportError(f"{folder} is a sentence-transformers {task} model without Pooling; "
                              "export it with --task sequence-classification or feature-extraction")
        raise ExportError(f"{folder}/modules.json has no Pooling module; add one or export as feature-extraction")
    config = SentenceTransformerConfig(
        pooling, normalize, _max_seq_length(transformer_config, transformer_file), dense_layers, transformer_dir,
        include_prompt=include_prompt, **common)
    if config.default_prompt and not include_prompt:
        # sentence-transformers then pools without the prompt's tokens; the graph pools over all.
        raise ExportError(
            f"{folder}: its default prompt {config.default_prompt!r} is excluded from pooling (include_prompt: "
            "false), which onnxport cannot reproduce yet; set default_prompt_name to null in "
            "config_sentence_transformers.json to export it without a default prompt")
    return config


def lowercase_tokenizer(tokenizer: Any) -> None:
    """Make a fast tokenizer lowercase its input, as sentence-transformers does for a folder
    with do_lower_case: a Lowercase normalizer in front of the tokenizer's own (so the saved
    tokenizer.json, and every runtime that reads it, lowercases too)."""
    from tokenizers.normalizers import Lowercase, Sequence

    backend = tokenizer.backend_tokenizer
    current = backend.normalizer
    if isinstance(current, Lowercase) or (isinstance(current, Sequence) and any(isinstance(n, Lowercase)
                                                                                 for n in current)):
        return
    steps = [Lowercase()] + (list(current) if isinstance(current, Sequence) else [current] if current else [])
    backend.normalizer = Sequence(steps)


def score_activation(folder: Path | None) -> str:
    """How a one-score model's logit becomes its score: 'sigmoid' (what CrossEncoder and the
    transformers pipeline apply to one label) unless a CrossEncoder folder names another."""
    config = _model_config(folder) if folder is not None else {}
    if config.get("model_type") != "CrossEncoder" or not config.get("activation_fn"):
        return "sigmoid"
    name = str(config["activation_fn"]).rsplit(".", 1)[-1]
    if name not in _SCORE_ACTIVATIONS:
        raise ExportError(f"{folder}: CrossEncoder activation_fn {config['activation_fn']} is not supported; "
                          f"supported: {sorted(_SCORE_ACTIVATIONS)}")
    return _SCORE_ACTIVATIONS[name]


def _model_config(folder: Path) -> dict:
    path = folder / "config_sentence_transformers.json"
    return read_json(path, dict, ST_RESAVE) if path.exists() else {}


def _transformer_config(module_dir: Path) -> tuple[dict, Path]:
    """The Transformer module's settings and the file they came from ({} when it has none)."""
    for name in _TRANSFORMER_CONFIG_FILES:
        if (module_dir / name).exists():
            return read_json(module_dir / name, dict, ST_RESAVE), module_dir / name
    return {}, module_dir / _TRANSFORMER_CONFIG_FILES[0]


def _max_seq_length(config: dict, config_file: Path) -> int | None:
    """v2-v5 write max_seq_length; v6 writes none (the tokenizer's model_max_length holds it),
    unless it was passed as a tokenizer/processor argument."""
    value = config.get("max_seq_length")
    for key in ("processor_kwargs", "tokenizer_args"):
        arguments = config.get(key)
        if value is None and isinstance(arguments, dict):
            value = arguments.get("model_max_length")
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ModelLoadError(f"{config_file}: max_seq_length {value!r} is not a positive integer; "
                             f"fix it, or {ST_RESAVE}")
    return value


def _read_pooling(config_file: Path) -> tuple[Pooling, bool]:
    """(pooling, include_prompt) from either config format."""
    if not config_file.exists():
        raise ModelLoadError(f"{config_file} is missing, so the pooling is unknown; {ST_RESAVE}")
    config = read_json(config_file, dict, ST_RESAVE)
    modes = config.get("pooling_mode")
    if modes is None:
        unknown = sorted(k for k, v in config.items()
                         if k.startswith("pooling_mode") and v and k not in _LEGACY_POOLING_FLAGS)
        if unknown:
            raise ExportError(f"{config_file}: unknown pooling flag(s) {unknown}; "
                              f"supported: {sorted(_LEGACY_POOLING_FLAGS)}")
        modes = [mode for key, mode in _LEGACY_POOLING_FLAGS.items() if config.get(key)] or ["mean"]
    modes = [modes] if isinstance(modes, str) else modes
    if not isinstance(modes, list) or not modes or not all(isinstance(m, str) for m in modes):
        raise ModelLoadError(f"{config_file}: pooling_mode {modes!r} is not a mode name or a list of them; "
                             f"{ST_RESAVE}")
    unknown = [m for m in modes if m not in _POOLING_MODES]
    if unknown:
        raise ExportError(f"{config_file}: pooling mode(s) {unknown} unknown; supported: {list(_POOLING_MODES)}")
    if len(modes) > 1:
        raise ExportError(f"{config_file}: several pooling modes concatenated ({' + '.join(modes)}) are not "
                          f"supported yet; onnxport exports one of {list(_POOLING_MODES)}")
    return _POOLING_MODES[modes[0]], bool(config.get("include_prompt", True))


def _read_splade(config_file: Path) -> tuple[str, str]:
    """(pooling strategy, activation function) of a SpladePooling module."""
    config = read_json(config_file, dict, ST_RESAVE) if config_file.exists() else {}
    strategy = config.get("pooling_strategy", "max")
    activation = config.get("activation_function", "relu")
    if strategy not in _SPLADE_POOLING or activation not in _SPLADE_ACTIVATIONS:
        raise ExportError(f"{config_file}: SpladePooling {strategy!r} with {activation!r} is not supported; "
                          f"supported: pooling_strategy {list(_SPLADE_POOLING)}, activation_function "
                          f"{list(_SPLADE_ACTIVATIONS)}")
    return strategy, activation


def _max_active_dims(folder: Path, config: dict) -> int | None:
    value = config.get("max_active_dims")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ModelLoadError(f"{folder}/config_sentence_transformers.json: max_active_dims {value!r} is not a "
                             f"positive integer; fix it, or {ST_RESAVE}")
    return value


def _read_dense(module_dir: Path, allow_pickle: bool) -> DenseLayer:
    import torch

    config = read_json(module_dir / "config.json", dict, ST_RESAVE)
    for key in ("module_input_name", "module_output_name"):
        if config.get(key, "sentence_embedding") != "sentence_embedding":
            raise ExportError(f"{module_dir}: a Dense module on {config[key]!r} is not supported yet; "
                              "onnxport applies Dense to the sentence embedding only")
    state = _dense_state(module_dir, allow_pickle)
    if "linear.weight" not in state:
        raise ModelLoadError(f"{module_dir} has no linear.weight, so it is not a Dense module; {ST_RESAVE}")
    activation = str(config.get("activation_function") or "torch.nn.modules.activation.Tanh").rsplit(".", 1)[-1]
    if activation not in _DENSE_ACTIVATIONS:
        raise ExportError(f"Dense activation {activation} in {module_dir} is not supported; "
                          f"supported: {sorted(_DENSE_ACTIVATIONS)}")
    bias = state.get("linear.bias")
    return DenseLayer(torch.as_tensor(state["linear.weight"]), None if bias is None else torch.as_tensor(bias),
                      activation)


def _dense_state(module_dir: Path, allow_pickle: bool) -> dict:
    """The Dense weights: model.safetensors (v3+), or v2's pickled pytorch_model.bin when allowed."""
    safe, pickled = module_dir / "model.safetensors", module_dir / "pytorch_model.bin"
    if safe.exists():
        from safetensors.torch import load_file

        check_safetensors([safe])
        return load_file(str(safe))
    if pickled.exists():
        if not allow_pickle:
            raise ModelLoadError(
                f"{pickled} holds the Dense weights as pickle, and loading pickle can run arbitrary code; "
                "save the model again with a current sentence-transformers (it writes model.safetensors), "
                "or pass --allow-pickle if you trust the file")
        import torch

        try:
            return torch.load(str(pickled), map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises several kinds for a damaged or non-tensor pickle
            raise ModelLoadError(f"cannot read {pickled}: {str(error).splitlines()[0]}; {ST_RESAVE}") from None
    raise ModelLoadError(f"{module_dir} has no model.safetensors (or pytorch_model.bin); {ST_RESAVE}")


def _prompts(folder: Path, config: dict) -> tuple[dict[str, str], str | None]:
    prompts = config.get("prompts") or {}
    source = folder / "config_sentence_transformers.json"
    if not isinstance(prompts, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in prompts.items()):
        raise ModelLoadError(f"{source}: prompts must map names to texts; {ST_RESAVE}")
    default = config.get("default_prompt_name")
    if default is not None and default not in prompts:
        raise ModelLoadError(f"{source}: default_prompt_name {default!r} is not one of the prompts "
                             f"{sorted(prompts)}; fix it, or {ST_RESAVE}")
    return prompts, default
