"""A tiny random-weight Llama for tests and benchmarks, built from nothing but installed files.

No model hub is reachable, so the tokenizer is trained here on Python's own standard-library
sources (present on every machine that runs us) and the weights come from a fixed seed. The
result is ~3 MB, builds in seconds and runs at thousands of tokens/s on a laptop CPU; its text is
gibberish, which is all a scheduler test needs.
"""

from __future__ import annotations

import sysconfig
from collections.abc import Iterator
from pathlib import Path

from autellix.models.chat_template import (
    END_OF_TEXT,
    IM_END,
    IM_START,
    TINY_CHAT_TEMPLATE,
    install_chat_template,
)

SEED = 0
VOCAB_SIZE = 4096
HIDDEN_SIZE = 128
NUM_LAYERS = 4
NUM_HEADS = 4
NUM_KV_HEADS = 2
INTERMEDIATE_SIZE = 512
MAX_POSITIONS = 4096
# Wider than Llama's 0.02: with 0.02 the random logits are nearly flat, so greedy decoding repeats
# one token and tiny numeric differences between batch shapes could flip the argmax. 0.1 gives
# varied, prompt-dependent text with clear winners.
INITIALIZER_RANGE = 0.1

# Prose-heavy stdlib modules (long docstrings and comments), read in this fixed order so the
# tokenizer is the same on every machine with the same Python minor version.
_CORPUS_FILES = (
    "argparse.py",
    "textwrap.py",
    "difflib.py",
    "pathlib.py",
    "typing.py",
    "inspect.py",
    "subprocess.py",
    "collections/__init__.py",
    "logging/__init__.py",
    "email/message.py",
    "http/client.py",
    "unittest/case.py",
)


def _corpus() -> Iterator[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    found = 0
    for relative in _CORPUS_FILES:
        path = stdlib / relative
        if path.is_file():
            found += 1
            yield path.read_text(encoding="utf-8", errors="replace")
    if found == 0:
        raise RuntimeError(f"no standard-library sources found under {stdlib} to train on")


def _train_tokenizer():  # -> transformers.PreTrainedTokenizerFast
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[END_OF_TEXT, IM_START, IM_END],  # ids 0, 1, 2
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte encodes: no <unk>
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=END_OF_TEXT,
        eos_token=IM_END,
        pad_token=END_OF_TEXT,
        chat_template=TINY_CHAT_TEMPLATE,
        model_max_length=MAX_POSITIONS,
    )


def build_tiny_model(dest: str | Path) -> Path:
    """Write a HF-format tiny Llama (config, bf16 safetensors, tokenizer, chat template) to `dest`.

    The chat template is ChatML with Hermes tool calling (chat_template.TINY_CHAT_TEMPLATE).
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN_SIZE,
        intermediate_size=INTERMEDIATE_SIZE,
        num_hidden_layers=NUM_LAYERS,
        num_attention_heads=NUM_HEADS,
        num_key_value_heads=NUM_KV_HEADS,
        max_position_embeddings=MAX_POSITIONS,
        initializer_range=INITIALIZER_RANGE,
        tie_word_embeddings=True,  # halves the file; vLLM's Llama supports it
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="bfloat16",
    )
    # fork_rng: the fixed seed must not leak into the caller's global RNG state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = LlamaForCausalLM(config).bfloat16()
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
    )
    model.save_pretrained(dest, safe_serialization=True)
    tokenizer.save_pretrained(dest)
    install_chat_template(dest, TINY_CHAT_TEMPLATE)  # into tokenizer_config.json, where we keep it
    return dest
