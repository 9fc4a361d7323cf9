"""A tiny chat model built on this machine: random weights from a small Llama-style config and a
byte-level BPE tokenizer trained on the fly, with a ChatML chat template that renders tools.

Nothing is downloaded. It is small enough to fine-tune on a laptop CPU in seconds, so the whole
loop (dataset → fine-tune → evaluation → playground) runs offline.

    python -m training.trainer.demo_model OUTPUT_DIR
"""

import sys
from dataclasses import dataclass
from pathlib import Path

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]

# ChatML, as Qwen-style chat models write it; tool calls as JSON inside <tool_call> tags.
CHAT_TEMPLATE = (
    "{%- if tools %}"
    "{{- '<|im_start|>system\\n' }}"
    "{%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] + '\\n\\n' }}{%- endif %}"
    "{{- 'Tools:\\n' }}{%- for tool in tools %}{{- (tool | tojson) + '\\n' }}{%- endfor %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- elif messages and messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message['role'] != 'system' %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] %}{{- message['content'] }}{%- endif %}"
    "{%- for call in message.get('tool_calls') or [] %}"
    "{{- '<tool_call>' + (call['function'] | tojson) + '</tool_call>' }}"
    "{%- endfor %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# Enough text for the tokenizer to learn common English pieces, digits and JSON punctuation.
_CORPUS = """
You are a helpful assistant. What is two plus two? The answer is 4. Summarise this support ticket.
The customer asks for a refund of the invoice. Translate to French: good morning, bonjour.
Classify the sentiment of the review as positive, negative or neutral. I loved it: positive.
Write SQL: SELECT name, total FROM orders WHERE total > 100 ORDER BY total DESC LIMIT 10;
{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}} 0 1 2 3 4 5 6 7 8 9
The quick brown fox jumps over the lazy dog. Please answer briefly and politely, in one sentence.
user assistant system tool function call result error message model data set train test yes no
"""


@dataclass(frozen=True)
class DemoSize:
    hidden_size: int = 64
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    intermediate_size: int = 128
    vocab_size: int = 512
    max_positions: int = 2048
    # Wider than the usual 0.02: with a frozen random output layer, small weights cap how confident any
    # prediction can get, and a LoRA fine-tune of the demo model could barely learn.
    initializer_range: float = 0.2
    model_vocab_size: int | None = None
    """Rows of the embedding and output layers when larger than the tokenizer's vocabulary (benchmarks
    use it to give a small model the output layer of a real one)."""


def build_tokenizer(vocab_size: int = 512):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator([line for line in _CORPUS.splitlines() if line] * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token="<|im_end|>",  # noqa: S106 (a token, not a password)
        pad_token="<|pad|>",  # noqa: S106
        unk_token=None,
        bos_token=None,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_demo_model(output_dir: str | Path, size: DemoSize = DemoSize(), seed: int = 0) -> Path:
    """Build the model and tokenizer and save both in `output_dir` (loadable with from_pretrained)."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(size.vocab_size)
    eos, pad = tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|pad|>"])
    config = LlamaConfig(
        vocab_size=max(len(tokenizer), size.model_vocab_size or 0),
        hidden_size=size.hidden_size,
        intermediate_size=size.intermediate_size,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        num_key_value_heads=size.kv_heads,
        max_position_embeddings=size.max_positions,
        bos_token_id=None,
        eos_token_id=eos,
        pad_token_id=pad,
        tie_word_embeddings=False,
        initializer_range=size.initializer_range,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=pad, max_new_tokens=64)
    model.save_pretrained(output)
    tokenizer.save_pretrained(output)
    return output


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m training.trainer.demo_model OUTPUT_DIR")
    print(build_demo_model(sys.argv[1]))
