"""The two engines a model server runs, behind one API (vLLM's OpenAI-compatible server with runtime LoRA updates):
vLLM on GPU workers, and the small transformers server (training.trainer.serve) for machines without vLLM or a GPU.
Here: the command that starts each, and the calls that load and unload an adapter."""

import importlib.util
import shlex
import sys
from dataclasses import dataclass

import httpx
from django.conf import settings

from training.models import Engine


@dataclass(frozen=True, slots=True)
class EngineSpec:
    engine: str
    weights: str  # a base model's path (adapters are loaded at run time), or a full fine-tune's weights
    served_name: str  # the name the weights themselves answer to
    port: int
    adapters: bool  # whether adapters are loaded on it at run time

    def command(self) -> list[str]:
        bind, port = settings.LOGTUNE_SERVING_BIND, str(self.port)
        lora = ["--max-loras", str(settings.LOGTUNE_SERVING_MAX_LORAS)] if self.adapters else []
        if self.engine == Engine.VLLM:
            if self.adapters:
                lora = ["--enable-lora", *lora, "--max-lora-rank", str(settings.LOGTUNE_SERVING_MAX_LORA_RANK)]
            return [
                *shlex.split(settings.LOGTUNE_VLLM_COMMAND), "serve", self.weights, "--host", bind, "--port", port,
                "--served-model-name", self.served_name, *lora, *shlex.split(settings.LOGTUNE_VLLM_ARGS),
            ]  # fmt: skip
        return [
            sys.executable, "-m", "training.trainer.serve", "--model", self.weights, "--host", bind, "--port", port,
            "--served-model-name", self.served_name, *lora,
        ]  # fmt: skip

    def environment(self) -> dict[str, str]:
        # vLLM takes adapters at run time only when told it may (POST /v1/load_lora_adapter).
        return {"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"} if self.engine == Engine.VLLM else {}


def engine_choose() -> str:
    """The engine this machine runs: LOGTUNE_SERVING_ENGINE, where "auto" is vLLM when it is installed."""
    choice = settings.LOGTUNE_SERVING_ENGINE
    if choice != "auto":
        return choice
    return Engine.VLLM if importlib.util.find_spec("vllm") is not None else Engine.TRANSFORMERS


class EngineError(Exception):
    pass


def server_ready(url: str) -> bool:
    """Whether the server at `url` (up to /v1) answers its health check."""
    try:
        return httpx.get(url.removesuffix("/v1") + "/health", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def adapter_load(url: str, *, name: str, path: str) -> None:
    """Load the adapter at `path` as the model `name` (vLLM's runtime API, which the small server shares)."""
    _post(url + "/load_lora_adapter", {"lora_name": name, "lora_path": path})


def adapter_unload(url: str, *, name: str) -> None:
    _post(url + "/unload_lora_adapter", {"lora_name": name})


def _post(url: str, body: dict) -> None:
    try:
        response = httpx.post(url, json=body, timeout=300.0)  # loading an adapter reads it from disk
    except httpx.HTTPError as exc:
        raise EngineError(f"{type(exc).__name__}: {exc}") from exc
    if response.status_code != 200:
        raise EngineError(f"{response.status_code}: {response.text[:500]}")
