"""Exporting a fine-tune for other runtimes: vLLM, Ollama, merged safetensors, and GGUF where llama.cpp's converter
is installed (docs/export-models.md)."""
