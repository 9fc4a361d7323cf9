"""The fine-tune form: base model, method and the trainer's hyperparameters, with TrainConfig's defaults."""

import types
import typing
from dataclasses import MISSING, fields
from typing import Any

from django import forms

from curation.models import Dataset, DatasetKind, DatasetSnapshot, JobStatus
from training import selectors
from training.models import Method
from training.playground.services import MAX_NEW_TOKENS
from training.trainer.config import CHOICES, DEFAULT_LEARNING_RATES, LIMITS, TrainConfig

# Shown open; the rest sit in a folded "Advanced" group.
MAIN = ("epochs", "learning_rate", "batch_size", "gradient_accumulation", "max_seq_length", "lora_rank", "max_steps")
ADVANCED = (
    "lora_alpha", "lora_dropout", "warmup_ratio", "scheduler", "weight_decay", "max_grad_norm", "seed",
    "freeze_layers", "eval_every_steps", "early_stopping_patience", "checkpoint_every_steps", "eval_generations",
    "max_new_tokens", "precision", "attn_implementation", "packing", "gradient_checkpointing", "per_example_losses",
)  # fmt: skip
# A dataset of preference pairs trains with dpo (the objective is set by the dataset, not the form).
DPO = ("dpo_beta", "dpo_label_smoothing")
LABELS = {
    "dpo_beta": (
        "DPO beta",
        "How far the fine-tune may move from the base model: larger keeps it closer (0.1 is usual).",
    ),
    "dpo_label_smoothing": ("Label smoothing", "The share of pairs assumed mislabelled (conservative DPO); 0: none."),
    "learning_rate": ("Learning rate", "Empty: 2e-4 for LoRA / QLoRA, 1e-5 for full and freeze."),
    "batch_size": ("Batch size", "Examples per micro-batch on each GPU."),
    "gradient_accumulation": ("Gradient accumulation", "Micro-batches per optimizer step."),
    "max_seq_length": ("Max sequence length", "Longer examples are cut to this many tokens."),
    "lora_rank": ("LoRA rank", "16 is a good start; up to 64 on large datasets."),
    "max_steps": ("Max steps", "Stop after this many optimizer steps (empty: by epochs)."),
    "lora_alpha": ("LoRA alpha", "Empty: 2 × rank."),
    "lora_dropout": ("LoRA dropout", "0 to 0.05 is usual."),
    "freeze_layers": ("Frozen layers", "Method freeze: decoder layers, from the input side, left as they are."),
    "eval_every_steps": ("Evaluate every", "Optimizer steps between evaluations (0: at the start and end only)."),
    "early_stopping_patience": ("Early stopping patience", "Evaluations without improvement (0: never)."),
    "checkpoint_every_steps": ("Checkpoint every", "Steps between resumable checkpoints (0: none)."),
    "eval_generations": ("Side-by-side answers", "Validation prompts answered by both models after training."),
    "max_new_tokens": ("Max new tokens", "Of each side-by-side answer."),
    "attn_implementation": ("Attention", "flash_attention_2 / _3 need flash-attn on the GPU workers."),
    "packing": ("Packing", "Lay a micro-batch's examples end to end, without attention across them."),
    "per_example_losses": ("Per-example losses", "Record each training example's loss: finds bad labels."),
}
_DEFAULTS = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
_TYPES = {f.name: f.type for f in fields(TrainConfig)}


def _field(name: str) -> forms.Field:
    annotation = _TYPES[name]
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    kinds = typing.get_args(annotation) if union else (annotation,)
    label, help_text = LABELS.get(name, (name.replace("_", " ").capitalize(), ""))
    options: dict[str, Any] = {"label": label, "help_text": help_text, "initial": _DEFAULTS.get(name),
                               "required": type(None) not in kinds}  # fmt: skip
    if name in CHOICES:
        return forms.ChoiceField(choices=[(c, c) for c in CHOICES[name]], **options)
    if bool in kinds:
        return forms.BooleanField(**{**options, "required": False})
    # The browser is told the bounds; TrainConfig checks them, with the same words as for the API and the trainer.
    low, high = LIMITS[name]
    if int in kinds:
        return forms.IntegerField(widget=forms.NumberInput(attrs={"min": low, "max": high}), **options)
    return forms.FloatField(widget=forms.NumberInput(attrs={"step": "any", "min": low, "max": high}), **options)


class FineTuneForm(forms.Form):
    base_model = forms.ChoiceField(label="Base model")
    method = forms.ChoiceField(choices=Method.choices, initial=Method.LORA)
    snapshot = forms.ModelChoiceField(
        queryset=DatasetSnapshot.objects.none(), required=False, empty_label="A new snapshot, frozen now",
        label="Snapshot",
    )  # fmt: skip

    def __init__(self, *args: Any, dataset: Dataset, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = selectors.base_model_choices()
        self.fields["base_model"].choices = choices  # type: ignore[attr-defined]
        self.fields["snapshot"].queryset = DatasetSnapshot.objects.filter(  # type: ignore[attr-defined]
            dataset=dataset, status=JobStatus.SUCCEEDED
        ).order_by("-created_at")
        self.pairs = dataset.kind == DatasetKind.PREFERENCE
        for name in (*MAIN, *ADVANCED, *(DPO if self.pairs else ())):
            self.fields[name] = _field(name)
        self.fields["learning_rate"].widget.attrs["placeholder"] = f"{DEFAULT_LEARNING_RATES['lora']:g}"
        self.fields["lora_alpha"].widget.attrs["placeholder"] = "2 × rank"
        # Each base model's own defaults over TrainConfig's: the initial values, and the values the page puts in
        # the fields when another base model is chosen (static/js/finetune_form.js).
        own = selectors.base_model_defaults()
        self.model_defaults = {
            model: {name: own.get(model, {}).get(name, _DEFAULTS.get(name)) for name in (*MAIN, *ADVANCED)}
            for model, _ in choices
        }
        if choices:
            chosen = str(self.data.get("base_model", "")) if self.is_bound else choices[0][0]
            for name, value in self.model_defaults.get(chosen, {}).items():
                self.fields[name].initial = value

    def main_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in MAIN]

    def advanced_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in ADVANCED]

    def dpo_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in DPO] if self.pairs else []

    def advanced_has_errors(self) -> bool:
        return any(self[name].errors for name in ADVANCED)

    def hyperparameters(self) -> dict[str, Any]:
        return {name: self.cleaned_data[name] for name in (*MAIN, *ADVANCED, *DPO) if name in self.cleaned_data}


class PlaygroundForm(forms.Form):
    prompt = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=20_000)
    system = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 1}), max_length=5_000)
    max_new_tokens = forms.IntegerField(min_value=1, max_value=MAX_NEW_TOKENS, initial=64)

    def messages(self) -> list[dict]:
        system = self.cleaned_data.get("system", "").strip()
        turns = [{"role": "system", "content": system}] if system else []
        return [*turns, {"role": "user", "content": self.cleaned_data["prompt"]}]


class LossPreviewForm(forms.Form):
    base_model = forms.ChoiceField(label="Base model")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["base_model"].choices = selectors.base_model_choices()  # type: ignore[attr-defined]
