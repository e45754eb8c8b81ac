"""A small Llama-architecture model built locally: random weights, a byte-level BPE tokenizer trained on
text that ships with Python, deterministic from a seed. No model hub is needed.

The folder (config.json, model.safetensors, tokenizer.json, ...) loads in vLLM, transformers,
TorchServe and Ray Serve alike. It is cached under a name derived from every input that shapes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["TinyModelSpec", "DEFAULT_SPEC", "build_model", "default_cache_dir", "corpus_text"]

# A chat template so that /v1/chat/completions works on the local model.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SPECIAL_TOKENS = ["<|bos|>", "<|eos|>", "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>"]


@dataclass(frozen=True)
class TinyModelSpec:
    hidden_size: int = 256
    intermediate_size: int = 704
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    vocab_size: int = 4096
    max_position_embeddings: int = 2048
    seed: int = 0

    def key(self) -> str:
        """A short hash of everything that shapes the model, the corpus and library versions included."""
        import tokenizers
        import transformers

        payload = json.dumps(
            {
                "spec": asdict(self),
                "corpus": hashlib.sha256(corpus_text().encode()).hexdigest(),
                "transformers": transformers.__version__.split(".")[0],
                "tokenizers": tokenizers.__version__,
                "format": 2,
            },
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


DEFAULT_SPEC = TinyModelSpec()


def default_cache_dir() -> Path:
    """$PERFSUITE_CACHE, else $XDG_CACHE_HOME/perfsuite, else ~/.cache/perfsuite."""
    if os.environ.get("PERFSUITE_CACHE"):
        return Path(os.environ["PERFSUITE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "perfsuite"


def corpus_text() -> str:
    """English text that ships with every CPython (the language reference topics used by pydoc),
    folded to ASCII so that every token of the vocabulary decodes to whole characters."""
    import unicodedata
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[k] for k in sorted(topics))
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def _train_tokenizer(spec: TinyModelSpec):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size,
        special_tokens=SPECIAL_TOKENS,
        show_progress=False,
    )
    text = corpus_text()
    chunks = [text[i : i + 4096] for i in range(0, len(text), 4096)]
    tok.train_from_iterator(chunks, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|bos|>",
        eos_token="<|eos|>",
        pad_token="<|pad|>",
        chat_template=CHAT_TEMPLATE,
        model_max_length=spec.max_position_embeddings,
    )


def build_model(spec: TinyModelSpec = DEFAULT_SPEC, cache_dir: str | os.PathLike | None = None) -> Path:
    """Return the folder of the model described by `spec`, building it first if it is not cached.

    The build goes to a temporary folder that is renamed into place, so a crash never leaves a half
    model where a whole one is expected.
    """
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    target = cache / "models" / f"tiny-llama-{spec.key()}"
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _train_tokenizer(spec)
    config = LlamaConfig(
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        vocab_size=len(tokenizer),
        max_position_embeddings=spec.max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(spec.seed)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        # Zero the special tokens' (tied) embeddings: their logit is then 0 while the others' are
        # random, so greedy decoding never picks one. A token whose text is empty would otherwise
        # stall the stream (servers send no chunk until text appears) and corrupt TTFT and ITL.
        specials = [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS]
        model.get_input_embeddings().weight[specials] = 0.0
    model.generation_config.pad_token_id = tokenizer.pad_token_id

    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "perfsuite-model.json").write_text(json.dumps({"spec": asdict(spec), "key": spec.key()}, indent=2))
        try:
            tmp.rename(target)
        except OSError:
            # Another process built it at the same time: theirs is as good as ours.
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


if __name__ == "__main__":
    print(build_model())
