"""Request bodies of the routes, as pydantic models: what FastAPI validates (a wrong type
is a 422 naming the field) before a handler sees it. Strict types, so 1 is never read as
"1" nor 1.0 as a token id."""

from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

Texts = Union[StrictStr, list[StrictStr]]
# [[first, second], ...]: sentence pairs (NLI premise and hypothesis), for /classify
Pairs = list[tuple[StrictStr, StrictStr]]
TokenIds = Union[list[StrictInt], list[list[StrictInt]]]


class _Body(BaseModel):
    # unknown fields are ignored, as OpenAI's and text-embeddings-inference's servers do
    model_config = ConfigDict(extra="ignore")
    model: Optional[StrictStr] = Field(None, description="which served model; default: the first")


class EmbeddingsRequest(_Body):
    """OpenAI's POST /v1/embeddings."""

    input: Union[Texts, TokenIds]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Optional[StrictInt] = None
    user: Optional[StrictStr] = None


class EmbedRequest(_Body):
    """text-embeddings-inference's POST /embed."""

    inputs: Texts
    normalize: StrictBool = True
    truncate: StrictBool = True
    dimensions: Optional[StrictInt] = None


class ClassifyRequest(_Body):
    inputs: Union[Texts, Pairs]
    top_k: Optional[StrictInt] = None
    raw_scores: StrictBool = False
    truncate: StrictBool = True


class RerankRequest(_Body):
    """text-embeddings-inference's POST /rerank."""

    query: StrictStr
    texts: list[StrictStr]
    raw_scores: StrictBool = False
    return_text: StrictBool = False
    truncate: StrictBool = True


class NerRequest(_Body):
    inputs: Texts
    aggregation: Literal["simple", "first", "max", "average"] = "simple"
    truncate: StrictBool = True
    # overlap of a long text's windows in tokens; "auto": an eighth of the window; null: cut at one window
    stride: Union[StrictInt, Literal["auto"], None] = "auto"


class TokenizeRequest(_Body):
    inputs: Texts
    add_special_tokens: StrictBool = True
