"""Loading the base model and marking what trains: a LoRA adapter (QLoRA on a 4-bit base), every weight,
or every weight but the first layers. No Django here."""

from typing import Any

from training.trainer.config import ConfigError, TrainConfig
from training.trainer.data import ensure_chat_template, stop_token_ids


def load_tokenizer(model_name: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_name)
    ensure_chat_template(tokenizer)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def model_stop_ids(model_name: str, tokenizer: Any) -> set[int]:
    from transformers import GenerationConfig

    try:
        configured = GenerationConfig.from_pretrained(model_name).eos_token_id
    except OSError:
        configured = None
    extra = configured if isinstance(configured, list) else [configured] if configured is not None else []
    return stop_token_ids(tokenizer, extra)


def resolve_precision(config: TrainConfig) -> str:
    import torch

    if config.precision != "auto":
        return config.precision
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"


def load_model(config: TrainConfig, *, precision: str, tokenizer: Any, device: Any):
    """The base model with what trains marked: a LoRA adapter, or all weights, or all but the first layers."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"attn_implementation": config.attn_implementation}
    if config.method == "qlora":
        kwargs.update(_qlora_kwargs(device))
    elif precision == "bf16" and config.uses_adapter:
        kwargs["dtype"] = torch.bfloat16  # frozen base weights in bf16; adapters stay fp32 (peft's default)
    else:
        kwargs["dtype"] = torch.float32  # trained weights in full precision; bf16 compute by autocast
    model = AutoModelForCausalLM.from_pretrained(config.model, **kwargs)
    embeddings: Any = model.get_input_embeddings()
    extra_tokens = bool(len(tokenizer) > embeddings.weight.shape[0])
    if extra_tokens:
        model.resize_token_embeddings(len(tokenizer))
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if config.uses_adapter:
        return _with_lora(model, config, extra_tokens)
    if config.method == "freeze":
        _freeze_first_layers(model, config.freeze_layers)
    return model


def _qlora_kwargs(device: Any) -> dict[str, Any]:
    import importlib.util

    import torch

    if device.type != "cuda":
        raise ConfigError("method: qlora needs a CUDA GPU; this process has none (use lora instead)")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError("method: qlora needs the bitsandbytes package on the GPU worker (pip install bitsandbytes)")
    from transformers import BitsAndBytesConfig

    quant = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    return {"quantization_config": quant, "dtype": torch.bfloat16, "device_map": {"": device.index or 0}}


def _with_lora(model: Any, config: TrainConfig, extra_tokens: bool):
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if config.method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing)
    elif config.gradient_checkpointing:
        model.enable_input_require_grads()
    # New tokens have untrained embeddings: train and save the embedding and output layers with the adapter.
    modules_to_save = _embedding_module_names(model) if extra_tokens else None
    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.target_modules,
        modules_to_save=modules_to_save,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def _embedding_module_names(model: Any) -> list[str]:
    wanted = {id(model.get_input_embeddings()), id(model.get_output_embeddings())}
    return [name.rsplit(".", 1)[-1] for name, module in model.named_modules() if id(module) in wanted]


def decoder_layers(model: Any) -> Any:
    """The decoder blocks: the module list as long as the config's layer count."""
    import torch

    count = getattr(model.config, "num_hidden_layers", None)
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == count:
            return module
    raise ConfigError("freeze_layers: cannot find this model's decoder layers")


def _freeze_first_layers(model: Any, count: int) -> None:
    layers = decoder_layers(model)
    if count >= len(layers):
        raise ConfigError(f"freeze_layers: the model has {len(layers)} layers; freeze fewer than that")
    model.get_input_embeddings().requires_grad_(False)
    for layer in layers[:count]:
        layer.requires_grad_(False)


def parameter_counts(model: Any) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())
