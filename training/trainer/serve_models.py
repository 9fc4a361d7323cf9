"""What the small server answers with: one base model in memory, LoRA adapters loaded onto it and removed at run
time (peft, through transformers' adapter methods), full fine-tunes as models of their own, and one generation at a
time. No Django here; torch and transformers are imported inside the functions."""

import contextlib
import gc
import json
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.trainer.data import render_prompt, stop_token_ids
from training.trainer.generate import is_adapter, load_causal_lm, load_for_answers
from training.trainer.modeling import load_tokenizer, model_stop_ids
from training.trainer.serve_api import ApiError, ChatRequest, model_not_found


@dataclass
class Served:
    """A model a request can name: the base, a LoRA adapter over it, or a full fine-tune."""

    name: str
    path: str
    kind: str  # "base", "lora" or "full"
    model: Any
    tokenizer: Any
    stop_ids: set[int]
    adapter: str = ""  # the adapter's name inside peft (client names may hold characters peft refuses)
    created: int = 0


@dataclass
class Generation:
    prompt_tokens: int
    completion_tokens: int
    finish: str  # "stop" (a stop token or string), "length", or "cancelled"


class Models:
    """The base (served under `names`) and the adapters loaded over it, at most `max_loras`. Loading, unloading and
    generating hold one lock: a request waits its turn, and an adapter never changes under a generation."""

    def __init__(self, path: str, *, names: list[str], max_loras: int, max_lora_rank: int | None = None,
                 max_model_len: int | None = None) -> None:  # fmt: skip
        model, tokenizer, stop_ids = load_for_answers(path, None)
        self.base = Served(names[0], path, "base", model, tokenizer, stop_ids, created=int(time.time()))
        self.names = names
        self.max_loras, self.max_lora_rank = max_loras, max_lora_rank
        self.max_model_len = max_model_len or getattr(model.config, "max_position_embeddings", None) or 4096
        self.adapters: dict[str, Served] = {}
        self.lock = threading.Lock()
        self._count = 0

    def listing(self) -> list[dict]:
        """/v1/models' cards: the base under each of its names, then each adapter, its parent the base."""
        cards = [self._card(name, self.base, None) for name in self.names]
        return cards + [self._card(name, served, self.names[0]) for name, served in list(self.adapters.items())]

    def _card(self, name: str, served: Served, parent: str | None) -> dict:
        return {"id": name, "object": "model", "created": served.created, "owned_by": "logtune", "root": served.path,
                "parent": parent, "max_model_len": self.max_model_len}  # fmt: skip

    def find(self, name: str | None) -> Served:
        if not name or name in self.names:
            return self.base
        served = self.adapters.get(name)
        if served is None:
            raise model_not_found(name)
        return served

    # --- adapters -------------------------------------------------------------------------------------

    def load(self, name: str, path: str, *, inplace: bool = False) -> None:
        """Serve the adapter (or full fine-tune) in folder `path` as `name`; ApiError as vLLM answers."""
        if not name or not path:
            raise ApiError(400, "Both 'lora_name' and 'lora_path' must be provided.")
        if name in self.names:
            raise ApiError(400, f"'{name}' is the base model's name; choose another name for the adapter.")
        folder = Path(path)
        if not (folder / "adapter_config.json").is_file() and not (folder / "config.json").is_file():
            raise ApiError(404, f"Loading lora {name} failed: No adapter found for {path}")
        self._check_rank(folder)
        with self.lock:
            if name in self.adapters and not inplace:
                raise ApiError(400, f"The lora adapter '{name}' has already been loaded. If you want to load the "
                                    "adapter in place, set 'load_inplace' to True.")  # fmt: skip
            if name not in self.adapters and len(self.adapters) >= self.max_loras:
                raise ApiError(400, f"This server holds at most {self.max_loras} adapters (--max-loras); unload "
                                    "one before loading another.")  # fmt: skip
            if name in self.adapters:
                self._drop(self.adapters.pop(name))
            try:
                served = self._read(name, str(folder))
            except Exception as exc:  # a folder that is not a model or adapter this base can take
                raise ApiError(400, f"Loading lora {name} failed: {type(exc).__name__}: {exc}") from None
            self.adapters[name] = served

    def unload(self, name: str) -> None:
        if not name:
            raise ApiError(400, "'lora_name' needs to be provided to unload a LoRA adapter.")
        with self.lock:
            served = self.adapters.pop(name, None)
            if served is None:
                raise ApiError(404, f"The lora adapter '{name}' cannot be found.")
            self._drop(served)

    def _check_rank(self, folder: Path) -> None:
        if self.max_lora_rank is None or not is_adapter(folder):
            return
        try:
            rank = json.loads((folder / "adapter_config.json").read_text()).get("r")
        except ValueError:
            raise ApiError(400, f"{folder}/adapter_config.json is not valid JSON.") from None
        if isinstance(rank, int) and rank > self.max_lora_rank:
            raise ApiError(400, f"LoRA rank {rank} is greater than max_lora_rank {self.max_lora_rank}.")

    def _read(self, name: str, path: str) -> Served:
        has_tokenizer = (Path(path) / "tokenizer_config.json").is_file()
        tokenizer = load_tokenizer(path) if has_tokenizer else self.base.tokenizer
        self._count += 1
        if is_adapter(path):
            adapter = f"adapter_{self._count}"
            try:
                with warnings.catch_warnings():  # peft warns that a model holds several adapters: it is meant to
                    warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
                    self.base.model.load_adapter(path, adapter_name=adapter)
            except Exception:
                with contextlib.suppress(Exception):  # what was injected of an adapter that failed half-way
                    self.base.model.delete_adapter(adapter)
                raise
            self.base.model.eval()  # the adapter's new layers start in training mode (dropout on)
            stops = self.base.stop_ids | stop_token_ids(tokenizer)
            return Served(name, path, "lora", self.base.model, tokenizer, stops, adapter, int(time.time()))
        model = load_causal_lm(path)
        stops = self.base.stop_ids | model_stop_ids(path, tokenizer)
        return Served(name, path, "full", model, tokenizer, stops, created=int(time.time()))

    def _drop(self, served: Served) -> None:
        if served.kind == "lora":
            self.base.model.delete_adapter(served.adapter)
        served.model = None
        gc.collect()
        _empty_gpu_cache()

    def _activate(self, served: Served) -> None:
        """Point the base's layers at the adapter `served` asks for, or at none."""
        if not any(other.kind == "lora" for other in self.adapters.values()):
            return
        if served.kind == "lora":
            served.model.enable_adapters()
            served.model.set_adapter(served.adapter)
        elif served.kind == "base":
            served.model.disable_adapters()

    # --- generation -----------------------------------------------------------------------------------

    def generate(
        self, request: ChatRequest, *, on_start: Callable[[int], None], on_text: Callable[[str], None],
        should_stop: Callable[[], bool],
    ) -> Generation:  # fmt: skip
        """Answer `request` with the model it names, once the lock is ours: `on_start(prompt_tokens)` before the
        first token, `on_text` with the text as it comes (in a thread of transformers' streamer), and the end
        once `should_stop()` says so (a client gone), checked at every token."""
        self.find(request.model)  # an unknown name is answered at once, without waiting for the lock
        with self.lock:
            served = self.find(request.model)  # it may have been unloaded while the request waited
            ids = self._prompt(served, request)
            max_new = self._max_new_tokens(ids.shape[1], request)
            self._activate(served)
            on_start(ids.shape[1])
            output = _run(served, ids, request, max_new, on_text, should_stop)
        new = output[0, ids.shape[1] :].tolist()
        if should_stop():
            finish = "cancelled"
        elif new and new[-1] in served.stop_ids:
            finish = "stop"
        else:
            finish = "length" if len(new) >= max_new else "stop"  # short of both: a stop string ended it
        return Generation(ids.shape[1], len(new), finish)

    def _prompt(self, served: Served, request: ChatRequest) -> Any:
        try:
            text = render_prompt(served.tokenizer, request.messages, request.tools)
        except Exception as exc:  # the chat template refused the conversation (roles out of order...)
            raise ApiError(400, f"The model's chat template cannot render these messages: {exc}",
                           param="messages") from None  # fmt: skip
        encoded = served.tokenizer(text, add_special_tokens=False, return_tensors="pt")
        return encoded["input_ids"].to(next(served.model.parameters()).device)

    def _max_new_tokens(self, prompt_tokens: int, request: ChatRequest) -> int:
        room = self.max_model_len - prompt_tokens
        wanted = request.max_tokens if request.max_tokens is not None else room
        if wanted > room or room < 1:
            raise ApiError(400, f"This model's maximum context length is {self.max_model_len} tokens. However, you "
                                f"requested {prompt_tokens + wanted} tokens ({prompt_tokens} in the messages, "
                                f"{wanted} in the completion). Please reduce the length of the messages or "
                                "completion.", param="max_tokens")  # fmt: skip
        return wanted


def _run(served: Served, ids: Any, request: ChatRequest, max_new: int, on_text: Callable[[str], None],
         should_stop: Callable[[], bool]) -> Any:  # fmt: skip
    """model.generate in a thread, its text handed to `on_text` here as the streamer gives it."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

    class Stop(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return torch.full((input_ids.shape[0],), should_stop(), dtype=torch.bool, device=input_ids.device)

    streamer = TextIteratorStreamer(served.tokenizer, skip_prompt=True, skip_special_tokens=True)
    options: dict[str, Any] = {
        "input_ids": ids, "attention_mask": torch.ones_like(ids), "max_new_tokens": max_new,
        "eos_token_id": sorted(served.stop_ids), "pad_token_id": served.tokenizer.pad_token_id, "use_cache": True,
        "streamer": streamer, "stopping_criteria": StoppingCriteriaList([Stop()]), "do_sample": not request.greedy,
    }  # fmt: skip
    if not request.greedy:
        options.update(temperature=request.temperature, top_p=request.top_p, top_k=0)
    if request.min_tokens:
        options["min_new_tokens"] = min(request.min_tokens, max_new)
    if request.stop:
        options.update(stop_strings=request.stop, tokenizer=served.tokenizer)
    if request.seed is not None:
        torch.manual_seed(request.seed)
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            result["output"] = served.model.generate(**options)
        except BaseException as exc:  # handed to the request's thread; the streamer must still end
            result["error"] = exc
            streamer.end()

    thread = threading.Thread(target=work, name="generate", daemon=True)
    thread.start()
    for piece in streamer:
        if piece:
            on_text(piece)
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["output"]


def _empty_gpu_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
