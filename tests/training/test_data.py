"""Labels from chat templates: which tokens train, checked token by token."""

import pytest

from training.trainer.data import IGNORE_INDEX, DataError, Record, encode, load_examples, pack, pad, stop_token_ids
from training.trainer.demo_model import build_tokenizer
from training.trainer.loss_preview import loss_preview

from .tiny import build_tiny_model, colour_conversation, write_jsonl


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(400)


def _record(messages, tools=None) -> Record:
    return Record(line=7, entry_id=None, split="train", messages=messages, tools=tools or [])


def _trained_text(tokenizer, example) -> list[str]:
    """The trained tokens, joined into the runs of consecutive trained tokens."""
    runs, current = [], []
    for token, label in zip(example.input_ids, example.labels, strict=True):
        if label != IGNORE_INDEX:
            current.append(token)
        elif current:
            runs.append(tokenizer.decode(current))
            current = []
    if current:
        runs.append(tokenizer.decode(current))
    return runs


def test_only_assistant_turns_and_their_end_token_train(tokenizer):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "and 3+3?"},
        {"role": "assistant", "content": "6"},
    ]
    example = encode(tokenizer, _record(messages), max_length=512, stop_ids=stop_token_ids(tokenizer))

    assert _trained_text(tokenizer, example) == ["4<|im_end|>", "6<|im_end|>"]
    text = tokenizer.decode(example.input_ids)
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
        "<|im_start|>assistant\n4<|im_end|>\n<|im_start|>user\nand 3+3?<|im_end|>\n"
        "<|im_start|>assistant\n6<|im_end|>\n"
    )
    # Each label is its own token (the shift happens in the loss), and the EOS that stops generation trains.
    trained = [(i, label) for i, label in enumerate(example.labels) if label != IGNORE_INDEX]
    assert all(example.input_ids[i] == label for i, label in trained)
    eos = tokenizer.eos_token_id
    assert [label for _, label in trained].count(eos) == 2


def test_a_turn_with_weight_zero_does_not_train(tokenizer):
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "bad answer", "weight": 0},
        {"role": "user", "content": "again"},
        {"role": "assistant", "content": "good"},
    ]
    example = encode(tokenizer, _record(messages), max_length=512, stop_ids=stop_token_ids(tokenizer))
    assert _trained_text(tokenizer, example) == ["good<|im_end|>"]


def test_tool_calls_are_rendered_by_the_template_and_train(tokenizer):
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}
        ]},
        {"role": "tool", "tool_call_id": "c1", "content": "18C"},
        {"role": "assistant", "content": "18C"},
    ]  # fmt: skip
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    example = encode(tokenizer, _record(messages, tools), max_length=1024, stop_ids=stop_token_ids(tokenizer))
    runs = _trained_text(tokenizer, example)
    assert runs[0] == '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call><|im_end|>'
    assert runs[1] == "18C<|im_end|>"
    assert "18C<|im_end|>\n<|im_start|>assistant" in tokenizer.decode(example.input_ids)  # tool result, not trained


def test_an_example_without_a_trainable_token_is_an_error(tokenizer):
    with pytest.raises(DataError, match="line 7: no assistant turn to train on"):
        encode(tokenizer, _record([{"role": "user", "content": "hello?"}]), max_length=64, stop_ids=set())
    only_weightless = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "weight": 0}]
    with pytest.raises(DataError, match="no assistant turn to train on"):
        encode(tokenizer, _record(only_weightless), max_length=64, stop_ids=set())


def test_a_template_that_never_writes_the_stop_token_is_an_error(tokenizer):
    tokenizer = build_tokenizer(400)
    tokenizer.chat_template = (
        "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    messages = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    with pytest.raises(DataError, match="does not end the assistant turn with a stop token"):
        encode(tokenizer, _record(messages), max_length=64, stop_ids=stop_token_ids(tokenizer))


def test_examples_cut_to_nothing_are_dropped_and_named(tokenizer, tmp_path):
    long_prompt = {"role": "user", "content": "word " * 200}
    rows = [colour_conversation("apple"), {"messages": [long_prompt, {"role": "assistant", "content": "x"}]}]
    train, validation, dropped = load_examples(
        tokenizer, write_jsonl(tmp_path / "d.jsonl", rows), max_length=64, stop_ids=stop_token_ids(tokenizer)
    )
    assert [e.line for e in train] == [1]
    assert validation == []
    assert [e.line for e in dropped] == [2]


def test_a_malformed_line_names_its_number(tokenizer, tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n{oops\n')
    with pytest.raises(DataError, match="line 2: not JSON"):
        load_examples(tokenizer, path, max_length=64, stop_ids=set())


def test_packing_restarts_positions_and_padding_masks_pads(tokenizer):
    stop = stop_token_ids(tokenizer)
    a = encode(tokenizer, _record(colour_conversation("apple")["messages"]), max_length=256, stop_ids=stop)
    b = encode(tokenizer, _record(colour_conversation("plum")["messages"]), max_length=256, stop_ids=stop)
    packed = pack([a, b])
    assert packed["input_ids"] == [a.input_ids + b.input_ids]
    assert packed["position_ids"] == [list(range(len(a))) + list(range(len(b)))]
    assert packed["labels"][0][len(a)] == IGNORE_INDEX  # the first token of b is not predicted from a
    padded = pad([a, b], pad_id=tokenizer.pad_token_id)
    longest = max(len(a), len(b))
    assert all(len(row) == longest for row in padded["input_ids"])
    assert sum(padded["attention_mask"][0]) == len(a)
    assert padded["labels"][0][len(a) :] == [IGNORE_INDEX] * (longest - len(a))


def test_loss_preview_marks_the_trained_tokens(tmp_path):
    model = build_tiny_model(tmp_path / "m")
    tokens = loss_preview(model=str(model), messages=colour_conversation("lime")["messages"], tools=[])
    assert "".join(t["text"] for t in tokens if t["trained"]) == "green<|im_end|>"
    assert "".join(t["text"] for t in tokens).startswith("<|im_start|>system\nAnswer with one word.")
