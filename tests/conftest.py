"""Import torch and transformers' lazily loaded parts once, before any test runs.

In-process pytester runs (`pytester.runpytest()`) restore sys.modules when they end: a module first
imported inside one is dropped, and importing torch's extensions a second time fails ("Only a single
TORCH_LIBRARY can be used ..."), after which transformers' lazy imports fail in unrelated tests.
"""

import torch  # noqa: F401
import transformers.models.llama.modeling_llama  # noqa: F401
from transformers import (  # noqa: F401
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationMixin,
    LlamaConfig,
    PreTrainedTokenizerFast,
)
