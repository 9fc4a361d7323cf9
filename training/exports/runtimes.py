"""What each runtime needs beside the weights: vLLM's command lines, Ollama's Modelfile, llama.cpp's converter
arguments and command lines. Pure text from a few facts about the fine-tune; no Django, no files written.

Checked against the runtimes' own documentation and code: vLLM's `--enable-lora`, `--lora-modules name=path`,
`--max-lora-rank` (one of `VLLM_MAX_LORA_RANKS`), `/v1/load_lora_adapter` with
`VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`; Ollama's Modelfile (`FROM`, `ADAPTER` with a path relative to the
Modelfile, a safetensors adapter or a GGUF one); llama.cpp's `convert_lora_to_gguf.py --base DIR` (only the base's
config is read) and `convert_hf_to_gguf.py`, and `llama-server --lora`.
"""

import json
import shlex
from dataclasses import dataclass
from pathlib import Path

# The values vLLM accepts for --max-lora-rank (vllm/config/lora.py, MaxLoRARanks).
VLLM_MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)

LORA_CONVERTER = "convert_lora_to_gguf.py"
MODEL_CONVERTER = "convert_hf_to_gguf.py"


@dataclass(frozen=True, slots=True)
class Runtime:
    """What the text needs to know: the name to serve it under, the base model as members see it, and the
    folder the weights have in the archive (`adapter` for a LoRA adapter, `model` for full weights)."""

    name: str  # finetune-7
    base: str  # a hub id, or a folder of the server by its place in the data folder
    base_is_folder: bool
    adapter: bool
    folder: str


def adapter_rank(adapter_dir: Path) -> int | None:
    """The largest LoRA rank of the adapter (`r`, or a larger one in `rank_pattern`); None when it says none."""
    try:
        config = json.loads((adapter_dir / "adapter_config.json").read_text())
    except (OSError, ValueError):
        return None
    ranks = [config.get("r"), *(config.get("rank_pattern") or {}).values()]
    whole = [rank for rank in ranks if isinstance(rank, int) and not isinstance(rank, bool) and rank > 0]
    return max(whole) if whole else None


def vllm_max_lora_rank(rank: int) -> int | None:
    """The smallest --max-lora-rank vLLM accepts that holds `rank`; None past the largest (512)."""
    return next((allowed for allowed in VLLM_MAX_LORA_RANKS if allowed >= rank), None)


def _base_note(runtime: Runtime) -> list[str]:
    if not (runtime.adapter and runtime.base_is_folder):
        return []
    return [f"# {runtime.base} is a folder on the Logtune server: copy the base model there, or name its hub id."]


def vllm_text(runtime: Runtime, *, rank: int | None) -> str:
    """vllm.txt: how to serve the export with vLLM, run from the folder holding vllm.txt."""
    head = [f"# {runtime.name}, exported by Logtune for vLLM. Run these from this folder (the one holding vllm.txt).",
            *_base_note(runtime)]  # fmt: skip
    if not runtime.adapter:
        serve = ["vllm", "serve", f"./{runtime.folder}", "--served-model-name", runtime.name]
        return "\n".join([*head, "", f'# Serves the fine-tuned weights as "model": "{runtime.name}".',
                          shlex.join(serve), ""])  # fmt: skip
    max_rank = vllm_max_lora_rank(rank or 16)
    if max_rank is None:
        return "\n".join([*head, "", f"# The adapter's rank ({rank}) is above the largest vLLM serves (512).", ""])
    lora = ["--enable-lora", "--max-lora-rank", str(max_rank)]
    serve = ["vllm", "serve", runtime.base, "--enable-lora", "--lora-modules", f"{runtime.name}=./{runtime.folder}",
             "--max-lora-rank", str(max_rank)]  # fmt: skip
    body = json.dumps({"lora_name": runtime.name, "lora_path": "$PWD/" + runtime.folder})
    load = 'curl -X POST http://localhost:8000/v1/load_lora_adapter -H "Content-Type: application/json" -d "{}"'
    return "\n".join([
        *head,
        f"# The adapter's rank is {rank if rank is not None else 'not in adapter_config.json (16 assumed)'}; "
        f"--max-lora-rank is the smallest value vLLM accepts that holds it.",
        "",
        f'# The base model with the adapter, asked for as "model": "{runtime.name}":',
        shlex.join(serve),
        "",
        "# Or load the adapter into a server already running the base model (the path must be one the server reads):",
        "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True " + shlex.join(["vllm", "serve", runtime.base, *lora]),
        load.format(body.replace('"', '\\"')),
        "",
    ])  # fmt: skip


def modelfile_text(runtime: Runtime, *, gguf_name: str | None = None) -> str:
    """Ollama's Modelfile: FROM the base with the adapter, or FROM the fine-tuned weights. The chat template is
    left to Ollama: a Jinja chat template does not translate reliably into Ollama's Go templates."""
    weights = f"./{gguf_name}" if gguf_name else f"./{runtime.folder}"
    if runtime.adapter:
        lines = [f"FROM {runtime.base}", f"ADAPTER {weights}",
                 "# FROM names the base model the adapter was trained on: replace it with that model's name in",
                 "# Ollama, or a folder of its weights, when Ollama does not know it by this name."]  # fmt: skip
        template = "# No TEMPLATE: Ollama uses the chat template of the model named in FROM."
    else:
        lines = [f"FROM {weights}"]
        template = "# No TEMPLATE: Ollama uses the chat template it finds with the weights (their tokenizer files)."
    return "\n".join([
        *lines,
        *_base_note(runtime),
        template,
        template_source(runtime, gguf=gguf_name is not None),
        f"# ollama create {runtime.name} -f Modelfile && ollama run {runtime.name}",
        "",
    ])  # fmt: skip


def template_source(runtime: Runtime, *, gguf: bool) -> str:
    where = "the tokenizer files of its adapter (or weights) download" if gguf else f"./{runtime.folder}/"
    return f"# The chat template this fine-tune trained with is in {where}: check that Ollama's matches it."


def gguf_converter_arguments(*, adapter: bool, source: str, base_dir: str | None, outfile: str) -> list[str]:
    """The converter's script and arguments: a LoRA adapter against its base's config (`base_dir`, a folder with
    its config.json: never fetched from the hub), or full weights."""
    if not adapter:
        return [MODEL_CONVERTER, source, "--outfile", outfile, "--outtype", "auto"]
    if base_dir is None:
        raise ValueError("a LoRA adapter is converted against its base model's config: give its folder")
    return [LORA_CONVERTER, "--base", base_dir, "--outfile", outfile, "--outtype", "auto", source]


def llama_cpp_text(runtime: Runtime, *, gguf_name: str) -> str:
    """llama.cpp.txt: how to serve the GGUF file with llama.cpp's server."""
    head = [f"# {runtime.name}, exported by Logtune as GGUF. Run these from this folder.", *_base_note(runtime)]
    if runtime.adapter:
        serve = ["llama-server", "-m", "BASE.gguf", "--lora", f"./{gguf_name}"]
        return "\n".join([*head, f"# A LoRA adapter: BASE.gguf is {runtime.base} converted to GGUF (not included).",
                          shlex.join(serve), "", "# Ollama: a Modelfile with FROM the base and ADAPTER this file.",
                          ""])  # fmt: skip
    return "\n".join([*head, shlex.join(["llama-server", "-m", f"./{gguf_name}"]), ""])
