"""The fine-tune API's input and output serializers, the hyperparameters' schema built from TrainConfig's limits."""

import types
import typing
from dataclasses import fields

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from curation.common.apis import (
    IdField,
    JSONObjectField,
    PathlessCharField,
    PathlessJSONField,
    StrictInput,
)
from training.evaluation.promotion.selectors import finetune_gate, promotion_rule_get
from training.evaluation.promotion.serializers import FineTuneGateOutput
from training.finetunes.services import (
    HYPERPARAMETERS,
)
from training.models import BaseModel, ExampleLoss, FineTuneJob, Method, MetricPoint
from training.trainer.config import CHOICES, LIMITS, TARGET_MODULES_MAX, TrainConfig


class FineTuneOutput(serializers.ModelSerializer):
    progress = serializers.FloatField(read_only=True)
    base_model: "serializers.SlugRelatedField[BaseModel]" = serializers.SlugRelatedField(
        slug_field="name", read_only=True
    )
    adapter_url = serializers.SerializerMethodField(
        help_text="Null until it succeeded, and once its weights are deleted."
    )
    dataset = serializers.IntegerField(
        source="dataset_id", read_only=True, allow_null=True, help_text="Null once the dataset is deleted."
    )
    dataset_name = serializers.CharField(read_only=True, help_text="The dataset's name, or its name when deleted.")
    dataset_deleted = serializers.SerializerMethodField(
        help_text="The dataset was deleted; the fine-tune, its weights and its snapshot stay."
    )
    weights_deleted_by = serializers.SerializerMethodField(help_text="Who deleted the weights: a user, or a key.")
    model = serializers.CharField(
        source="model_name", read_only=True,
        help_text="What the trainer loads: a hub id, or a folder in the data folder by its place there.",
    )  # fmt: skip
    # Jobs stored before the server's paths were kept out of what members read may still hold some.
    summary = PathlessJSONField(read_only=True, help_text="The trainer's start, checkpoint, warnings and done.")
    error = PathlessCharField(read_only=True)
    merge_error = PathlessCharField(read_only=True)
    gguf_error = PathlessCharField(read_only=True)
    gate = serializers.SerializerMethodField(
        help_text="The promotion gate's verdict on its latest succeeded evaluation; null when it has none."
    )

    class Meta:
        model = FineTuneJob
        fields = [
            "id", "dataset", "dataset_name", "dataset_deleted", "snapshot", "base_model", "model", "method",
            "hyperparameters", "status", "progress", "step", "total_steps", "eta_seconds", "attempts", "worker",
            "heartbeat_at", "cancel_requested_at", "error", "summary", "evaluation", "merge_status", "merge_error",
            "gguf_status", "gguf_error", "adapter_url", "weights_deleted_at", "weights_deleted_by", "gate",
            "created_at", "started_at", "finished_at",
        ]  # fmt: skip

    def get_adapter_url(self, job: FineTuneJob) -> str | None:
        return reverse("api-finetune-adapter", args=[job.pk]) if job.has_weights else None

    def get_dataset_deleted(self, job: FineTuneJob) -> bool:
        return job.dataset_id is None

    def get_weights_deleted_by(self, job: FineTuneJob) -> str | None:
        return job.weights_deleted_by_label if job.weights_deleted_at is not None else None

    @extend_schema_field(FineTuneGateOutput(allow_null=True))
    def get_gate(self, job: FineTuneJob) -> dict | None:
        return finetune_gate(job=job, rule=promotion_rule_get(project=job.project).gate_rule)


HYPERPARAMETER_TYPES = {f.name: f.type for f in fields(TrainConfig)}


class FineTuneListOutput(FineTuneOutput):
    class Meta(FineTuneOutput.Meta):
        fields = [name for name in FineTuneOutput.Meta.fields if name not in ("evaluation", "summary", "gate")]


_JSON_TYPES: dict[object, dict[str, object]] = {
    int: {"type": "integer"}, float: {"type": "number"}, bool: {"type": "boolean"}, str: {"type": "string"},
    dict: {"type": "object", "additionalProperties": True},
}  # fmt: skip


_EXCLUSIVE = {"learning_rate": ("min", "max"), "epochs": ("min",), "warmup_ratio": ("max",), "lora_dropout": ("max",)}


def _setting_schema(name: str) -> dict[str, object]:
    """One TrainConfig setting as JSON Schema: its type, range (training.trainer.config.LIMITS) or choices."""
    if name in CHOICES:
        return {"type": "string", "enum": list(CHOICES[name])}
    if name == "target_modules":
        names = {"type": "string", "minLength": 1, "maxLength": 200}
        return {"oneOf": [names, {"type": "array", "items": names, "minItems": 1, "maxItems": TARGET_MODULES_MAX}]}
    annotation = HYPERPARAMETER_TYPES[name]
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    kinds = [kind for kind in (typing.get_args(annotation) if union else (annotation,)) if kind is not type(None)]
    schema: dict[str, object] = dict(_JSON_TYPES[typing.get_origin(kinds[0]) or kinds[0]])
    if name in LIMITS:
        schema["minimum"], schema["maximum"] = LIMITS[name]
        for end in _EXCLUSIVE.get(name, ()):
            schema["exclusiveMinimum" if end == "min" else "exclusiveMaximum"] = True
    if len(kinds) < (len(typing.get_args(annotation)) if union else 1):
        schema["nullable"] = True
    return schema


@extend_schema_field(
    {
        "type": "object",
        "properties": {name: _setting_schema(name) for name in HYPERPARAMETERS},
        "additionalProperties": False,
        "description": "TrainConfig settings by name (docs/training.md); left out ones take their defaults.",
    }
)
class HyperparametersField(JSONObjectField):
    """The trainer's settings: their names, types and ranges are TrainConfig's, which checks them (with the
    settings that depend on one another: method freeze needs freeze_layers)."""


class FineTuneInput(StrictInput):
    dataset = IdField()
    base_model = serializers.CharField(help_text="Name of a registered base model (GET /api/v1/base-models).")
    method = serializers.ChoiceField(choices=Method.choices, default=Method.LORA)
    hyperparameters = HyperparametersField(required=False, default=dict)
    snapshot = IdField(required=False, allow_null=True, help_text="Left out: frozen now.")


class EstimateInput(StrictInput):
    dataset = IdField()
    base_model = serializers.CharField(required=False, help_text="Its default hyperparameters apply; left out: none.")
    method = serializers.ChoiceField(choices=Method.choices, default=Method.LORA)
    hyperparameters = HyperparametersField(required=False, default=dict)


class MetricPointOutput(serializers.ModelSerializer):
    class Meta:
        model = MetricPoint
        fields = [
            "step",
            "epoch",
            "train_loss",
            "eval_loss",
            "learning_rate",
            "grad_norm",
            "tokens_per_second",
            "time",
        ]


class ExampleLossOutput(serializers.ModelSerializer):
    class Meta:
        model = ExampleLoss
        fields = ["line", "entry", "loss", "tokens"]


class BaseModelOutput(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField()
    registered = serializers.BooleanField(help_text="A database row; otherwise listed in LOGTUNE_BASE_MODELS.")
    default_hyperparameters = serializers.DictField(
        help_text="Trainer settings a fine-tune of this model takes unless its hyperparameters set them."
    )


class WeightOutput(serializers.Serializer):
    name = serializers.CharField(
        help_text="In the job's folder: adapter, merged, gguf, checkpoints, best.safetensors."
    )
    bytes = serializers.IntegerField()


class FineTuneDeletionOutput(serializers.Serializer):
    id = serializers.IntegerField(source="job_id")
    folder = serializers.CharField(help_text="The job's folder on the workers, removed with everything in it.")
    bytes = serializers.IntegerField(source="folder_bytes", help_text="The size of that folder.")
    weights = WeightOutput(many=True, help_text="The weights in it.")
    metric_points = serializers.IntegerField()
    example_losses = serializers.IntegerField()
    generations = serializers.IntegerField(help_text="Playground answers.")
    snapshot = serializers.IntegerField(
        source="snapshot.pk", allow_null=True, default=None,
        help_text="The snapshot deleted with it (its dataset is gone and no other fine-tune trained on it), or null.",
    )  # fmt: skip


class WeightsOutput(serializers.Serializer):
    weights = WeightOutput(many=True, help_text="On disk now (GET), or deleted by this request (DELETE).")
    bytes = serializers.IntegerField(source="weights_bytes", help_text="What deleting them frees (freed).")
    deleted_at = serializers.DateTimeField(allow_null=True)
    deleted_by = serializers.CharField(allow_null=True, help_text="A user's name, or an API key's prefix.")
