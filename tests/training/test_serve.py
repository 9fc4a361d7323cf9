"""The small model server (training/trainer/serve.py) on the tiny local model, over HTTP with the openai SDK: the
same API as vLLM's OpenAI-compatible server, LoRA adapters loaded and removed at run time included."""

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from training.trainer.data import render_prompt, template_messages
from training.trainer.modeling import load_tokenizer
from training.trainer.serve import parse_args
from training.trainer.serve_api import TextFilter, completion, split_tool_calls

from .tiny import build_tiny_model

REPO = Path(__file__).resolve().parents[2]
QUESTION = [
    {"role": "system", "content": "Answer with one word."},
    {"role": "user", "content": "What colour is a lime?"},
]
# The tiny model's weights are random: it rarely writes its stop token, so answers are cut by max_tokens, and
# `ignore_eos` (vLLM's sampling extra) makes a long answer certain.
LONG = {"ignore_eos": True}


@dataclass
class Running:
    url: str
    process: subprocess.Popen
    log: Path
    base: Path
    folders: dict[str, Path]

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key="none", max_retries=0, timeout=60)

    def post(self, path: str, body: object) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", json=body, timeout=60)

    def log_lines(self, prefix: str) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if line.startswith(prefix)]


def make_adapter(base: Path, folder: Path, seed: int) -> Path:
    """A LoRA adapter over `base` whose B matrices are not zero, so that it changes the answers."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM")
    get_peft_model(AutoModelForCausalLM.from_pretrained(base), config).save_pretrained(folder)
    return folder


def make_full_fine_tune(base: Path, folder: Path) -> Path:
    """A whole model of the base's shape with other weights, as a full fine-tune saves it."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base)
    torch.manual_seed(7)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.2)
    model.save_pretrained(folder)
    load_tokenizer(str(base)).save_pretrained(folder)
    return folder


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, log: Path, deadline_s: float = 90) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the server was not healthy within {deadline_s} s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Running:
    root = tmp_path_factory.mktemp("serve")
    base = build_tiny_model(root / "base")
    folders = {"a1": make_adapter(base, root / "a1", seed=1), "a2": make_adapter(base, root / "a2", seed=2),
               "full": make_full_fine_tune(base, root / "full"), "empty": root / "empty"}  # fmt: skip
    folders["empty"].mkdir()
    port, log = free_port(), root / "server.log"
    command = [sys.executable, "-m", "training.trainer.serve", "--model", str(base), "--port", str(port),
               "--served-model-name", "tiny", "--max-loras", "2"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env)
    running = Running(f"http://127.0.0.1:{port}", process, log, base, folders)
    try:
        wait_healthy(running.url, process, log)
        yield running
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


def ask(server: Running, model: str = "tiny", **options) -> openai.types.chat.ChatCompletion:
    options = {"temperature": 0, "max_tokens": 8, **options}
    return server.client().chat.completions.create(model=model, messages=QUESTION, **options)


def ask_streamed(server: Running, model: str = "tiny", **options) -> list:
    options = {"temperature": 0, "max_tokens": 8, **options}
    return list(server.client().chat.completions.create(model=model, messages=QUESTION, stream=True, **options))


def streamed_text(chunks: list) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


# --- answers ------------------------------------------------------------------------------------------


def test_it_answers_a_chat_completion_with_its_usage_counted(server):
    answer = ask(server, max_tokens=6)

    tokenizer = load_tokenizer(str(server.base))
    prompt = tokenizer(render_prompt(tokenizer, template_messages(QUESTION)), add_special_tokens=False)["input_ids"]
    assert answer.id.startswith("chatcmpl-") and answer.object == "chat.completion" and answer.model == "tiny"
    assert answer.choices[0].message.role == "assistant" and answer.choices[0].message.content
    assert answer.choices[0].finish_reason in ("stop", "length")
    assert answer.usage.prompt_tokens == len(prompt)
    assert 1 <= answer.usage.completion_tokens <= 6
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens


def test_the_streamed_answer_is_the_answer_token_for_token(server):
    answer = ask(server, max_tokens=12)
    chunks = ask_streamed(server, max_tokens=12, stream_options={"include_usage": True})

    assert chunks[0].choices[0].delta.role == "assistant"
    assert streamed_text(chunks) == answer.choices[0].message.content
    assert chunks[-2].choices[0].finish_reason == answer.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage == answer.usage
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1


def test_max_tokens_is_honoured_with_finish_reason_length(server):
    capped = ask(server, max_tokens=3, extra_body=LONG)
    newer_name = ask(server, max_tokens=None, max_completion_tokens=4, extra_body=LONG)

    assert (capped.usage.completion_tokens, capped.choices[0].finish_reason) == (3, "length")
    assert (newer_name.usage.completion_tokens, newer_name.choices[0].finish_reason) == (4, "length")


def test_a_stop_string_cuts_the_answer_before_it(server):
    text = ask(server, max_tokens=12, extra_body=LONG).choices[0].message.content
    stop = next(char for char in reversed(text[1:]) if char.isalnum())

    cut = ask(server, max_tokens=12, stop=[stop], extra_body=LONG)
    streamed = ask_streamed(server, max_tokens=12, stop=stop, extra_body=LONG)

    assert cut.choices[0].message.content == text[: text.index(stop)]
    assert cut.choices[0].finish_reason == "stop"
    assert streamed_text(streamed) == text[: text.index(stop)]
    assert streamed[-1].choices[0].finish_reason == "stop"


def test_sampling_with_a_seed_repeats_itself(server):
    first = ask(server, temperature=1.0, top_p=0.9, seed=5, extra_body=LONG)
    second = ask(server, temperature=1.0, top_p=0.9, seed=5, extra_body=LONG)

    assert first.choices[0].message.content == second.choices[0].message.content


def test_tool_messages_and_tools_are_accepted(server):
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
    ]  # fmt: skip
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]

    answer = server.client().chat.completions.create(
        model="tiny", messages=messages, tools=tools, max_tokens=4, temperature=0,
        response_format={"type": "json_object"}, extra_body={"some_unknown_field": 1},
    )  # fmt: skip

    assert answer.choices[0].finish_reason in ("stop", "length", "tool_calls")


def test_two_requests_at_once_are_both_answered(server):
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: ask(server, max_tokens=10), range(2)))

    assert answers[0].choices[0].message.content == answers[1].choices[0].message.content
    assert answers[0].id != answers[1].id


def test_health_answers_during_a_generation_and_a_client_gone_stops_it(server):
    stream = server.client().chat.completions.create(
        model="tiny", messages=QUESTION, stream=True, max_tokens=1500, temperature=0, extra_body=LONG
    )
    next(iter(stream))  # the role chunk: generation has begun

    health = httpx.get(f"{server.url}/health", timeout=60)
    listed = httpx.get(f"{server.url}/v1/models", timeout=60)
    stream.close()

    assert health.status_code == 200 and listed.status_code == 200
    deadline = time.monotonic() + 30
    while not (ended := [line for line in server.log_lines("serve.request") if "finish=cancelled" in line]):
        assert time.monotonic() < deadline, server.log.read_text()
        time.sleep(0.1)
    # Had /health waited for the generation, the stream would have been answered in full (1500 tokens) by then.
    completion_tokens = int(ended[0].split(" tokens=")[1].split()[0].split("+")[1])
    assert completion_tokens < 1500


# --- models and adapters ------------------------------------------------------------------------------


def test_adapters_loaded_at_run_time_answer_as_themselves_until_unloaded(server):
    for name in ("a1", "a2"):
        loaded = server.post("/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(server.folders[name])})
        assert (loaded.status_code, loaded.text) == (200, f"Success: LoRA adapter '{name}' added successfully.")

    listed = {m.id: m for m in server.client().models.list().data}
    answers = {name: ask(server, name, extra_body=LONG).choices[0].message.content for name in ("tiny", "a1", "a2")}
    unloaded = server.post("/v1/unload_lora_adapter", {"lora_name": "a1"})
    with pytest.raises(openai.NotFoundError):
        ask(server, "a1")
    after = {name: ask(server, name, extra_body=LONG).choices[0].message.content for name in ("tiny", "a2")}
    server.post("/v1/unload_lora_adapter", {"lora_name": "a2"})

    assert list(listed) == ["tiny", "a1", "a2"]
    assert listed["tiny"].parent is None and listed["tiny"].object == "model"
    assert listed["a1"].parent == "tiny" and listed["a1"].root == str(server.folders["a1"])
    assert len(set(answers.values())) == 3
    assert unloaded.status_code == 200
    assert after == {"tiny": answers["tiny"], "a2": answers["a2"]}
    assert [m.id for m in server.client().models.list().data] == ["tiny"]


def test_a_folder_without_adapter_config_is_served_as_a_full_fine_tune(server):
    base = ask(server, extra_body=LONG).choices[0].message.content

    loaded = server.post("/v1/load_lora_adapter", {"lora_name": "full", "lora_path": str(server.folders["full"])})
    tuned = ask(server, "full", extra_body=LONG).choices[0].message.content
    server.post("/v1/unload_lora_adapter", {"lora_name": "full"})

    assert loaded.status_code == 200
    assert tuned != base
    assert ask(server, extra_body=LONG).choices[0].message.content == base


def test_loading_and_unloading_refuse_as_vllm_does(server):
    a1, a2 = str(server.folders["a1"]), str(server.folders["a2"])
    assert server.post("/v1/load_lora_adapter", {"lora_name": "x1", "lora_path": a1}).status_code == 200
    try:
        taken = server.post("/v1/load_lora_adapter", {"lora_name": "x1", "lora_path": a2})
        empty = server.post("/v1/load_lora_adapter", {"lora_name": "x2", "lora_path": str(server.folders["empty"])})
        missing = server.post("/v1/load_lora_adapter", {"lora_name": "x2"})
        assert server.post("/v1/load_lora_adapter", {"lora_name": "x2", "lora_path": a2}).status_code == 200
        beyond = server.post("/v1/load_lora_adapter", {"lora_name": "x3", "lora_path": a1})
    finally:
        for name in ("x1", "x2"):
            server.post("/v1/unload_lora_adapter", {"lora_name": name})
    unknown = server.post("/v1/unload_lora_adapter", {"lora_name": "x1"})

    assert taken.status_code == 400 and taken.json()["error"]["message"].startswith(
        "The lora adapter 'x1' has already been loaded."
    )
    assert empty.status_code == 404
    assert (
        empty.json()["error"]["message"] == f"Loading lora x2 failed: No adapter found for {server.folders['empty']}"
    )
    assert missing.status_code == 400
    assert missing.json()["error"]["message"] == "Both 'lora_name' and 'lora_path' must be provided."
    assert beyond.status_code == 400 and "at most 2 adapters (--max-loras)" in beyond.json()["error"]["message"]
    assert unknown.status_code == 404
    assert unknown.json()["error"] == {"message": "The lora adapter 'x1' cannot be found.", "type": "NotFoundError",
                                       "param": None, "code": 404}  # fmt: skip


# --- refusals -----------------------------------------------------------------------------------------


def test_an_unknown_model_is_404_in_openais_error_shape(server):
    with pytest.raises(openai.NotFoundError) as refused:
        ask(server, "nope")

    assert refused.value.response.json() == {
        "error": {
            "message": "The model `nope` does not exist.",
            "type": "NotFoundError",
            "param": "model",
            "code": 404,
        }
    }


def test_more_than_one_answer_is_refused(server):
    with pytest.raises(openai.BadRequestError) as refused:
        ask(server, n=2)

    assert refused.value.response.json()["error"]["param"] == "n"
    assert "Only n=1 is supported" in refused.value.response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "The body is not valid JSON"),
        (b"[1, 2]", "The body must be a JSON object."),
        (b'{"model": "tiny"}', "messages must be a non-empty list of messages."),
        (b'{"messages": [{"role": "wizard", "content": "hi"}]}', "messages[0] must be an object whose role is one of"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}',
         'temperature must be a number from 0 to 2, not "hot".'),
        (b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}', "max_tokens must be at least 1."),
        (b'{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}',
         'messages[0].content: only text parts are supported, not "image_url".'),
        (b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100000}',
         "This model's maximum context length is 2048 tokens."),
    ],
)  # fmt: skip
def test_a_malformed_body_is_400_with_a_precise_message(server, body, message):
    refused = httpx.post(f"{server.url}/v1/chat/completions", content=body, timeout=60,
                         headers={"Content-Type": "application/json"})  # fmt: skip

    assert refused.status_code == 400
    assert refused.json()["error"]["type"] == "BadRequestError"
    assert message in refused.json()["error"]["message"]


def test_an_unknown_path_is_404_and_the_connection_serves_the_next_request(server):
    with httpx.Client(base_url=server.url, timeout=60) as client:
        missing = client.post("/v1/completions", json={"model": "tiny", "prompt": "Hi"})
        health = client.get("/health")

    assert missing.status_code == 404 and missing.json()["error"]["type"] == "NotFoundError"
    assert health.status_code == 200


def test_each_request_is_logged_on_one_line_without_its_messages(server):
    ask(server)

    line = server.log_lines("serve.request method=POST path=/v1/chat/completions status=200 model=tiny")[-1]
    assert " tokens=" in line and " ms=" in line
    assert "lime" not in server.log.read_text()


def test_help_documents_every_option():
    shown = subprocess.run([sys.executable, "-m", "training.trainer.serve", "--help"], cwd=REPO, capture_output=True,
                           text=True, timeout=60)  # fmt: skip

    assert shown.returncode == 0, shown.stderr
    for option in ("--model", "--host", "--port", "--served-model-name", "--lora-modules", "--max-loras",
                   "--max-lora-rank", "--max-model-len", "--enable-lora"):  # fmt: skip
        assert option in shown.stdout


def test_lora_modules_are_read_as_vllm_writes_them():
    args = parse_args(["--model", "m", "--lora-modules", "a=/x", '{"name": "b", "path": "/y"}', "--max-loras", "2"])

    assert args.lora_modules == [("a", "/x"), ("b", "/y")]
    assert args.served_model_name == ["m"] and (args.host, args.port) == ("127.0.0.1", 8000)
    with pytest.raises(SystemExit):
        parse_args(["--model", "m", "--lora-modules", "a=/x", "b=/y", "--max-loras", "1"])
    with pytest.raises(SystemExit):
        parse_args(["--model", "m", "--lora-modules", "no-path"])


# --- text as the client sees it -----------------------------------------------------------------------


def test_tool_call_blocks_become_tool_calls_and_the_rest_stays_text():
    text = 'Let me look.<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call><tool_call>oops'

    rest, calls = split_tool_calls(text + "</tool_call>")

    assert rest == "Let me look.<tool_call>oops</tool_call>"
    assert [c["function"] for c in calls] == [{"name": "get_weather", "arguments": '{"city": "Paris"}'}]
    assert calls[0]["type"] == "function" and calls[0]["id"].startswith("chatcmpl-tool-")


def test_an_answer_with_tool_calls_finishes_with_tool_calls_and_no_content():
    text = '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'

    offered = completion(ident="chatcmpl-1", model="tiny", text=text, tools=True, finish="stop", counts={})
    not_offered = completion(ident="chatcmpl-1", model="tiny", text=text, tools=False, finish="stop", counts={})

    assert offered["choices"][0]["finish_reason"] == "tool_calls"
    assert offered["choices"][0]["message"]["content"] is None
    assert offered["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert not_offered["choices"][0]["message"] == {"role": "assistant", "content": text, "tool_calls": []}


def test_the_filter_holds_back_what_may_begin_a_stop_string_or_a_tool_call():
    stops = TextFilter(["END"], tools=False)
    sent = [stops.feed(piece) for piece in ("Hello E", "N", "D and more")]
    tools = TextFilter([], tools=True)
    shown = [tools.feed(piece) for piece in ("Sure <tool", "_call>{", '"name": "f"}</tool_call>')]

    assert sent == ["Hello ", "", ""] and stops.stopped and stops.text == "Hello "
    assert shown == ["Sure ", "", ""] and tools.held
    assert tools.rest() == '<tool_call>{"name": "f"}</tool_call>'


# --- stopping -----------------------------------------------------------------------------------------


def test_sigterm_finishes_the_request_under_way_and_exits_0(server):
    stream = server.client().chat.completions.create(
        model="tiny", messages=QUESTION, stream=True, max_tokens=300, temperature=0, extra_body=LONG
    )
    chunks = [next(iter(stream))]

    server.process.send_signal(signal.SIGTERM)
    chunks += list(stream)

    assert server.process.wait(timeout=60) == 0
    assert chunks[-1].choices[0].finish_reason == "length"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/health", timeout=5)
    events = [line.split()[0] for line in server.log_lines("serve.")]
    assert events[-3:] == ["serve.stopping", "serve.request", "serve.stopped"]
    assert "requests=1" in server.log_lines("serve.stopping")[0]
    assert "+300 finish=length" in server.log_lines("serve.request")[-1]
