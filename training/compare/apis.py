"""REST API of fine-tunes compared: the jobs, their metrics with intervals and the settings they differ in, as the
compare page shows them (its answers side by side are the evaluation runs' own, `GET …/evaluations/{id}`)."""

import re

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response

from curation.common.apis import PROJECT_PARAMETER, ProjectScopedApi
from curation.common.permissions import project_for_request
from training.compare.selectors import MAX_JOBS, Comparison, compare_ids, comparison_get
from training.finetunes.serializers import FineTuneListOutput
from training.models import FineTuneJob

IDS_PATTERN = rf"^[0-9]{{1,18}}(,[0-9]{{1,18}}){{1,{MAX_JOBS - 1}}}$"
IDS_PARAMETER = OpenApiParameter(
    "ids", {"type": "string", "pattern": IDS_PATTERN}, required=True,
    description=f"The fine-tunes to compare, 2 to {MAX_JOBS} different ids, comma-separated (`3,5,8`).",
)  # fmt: skip


class CompareEstimateOutput(serializers.Serializer):
    value = serializers.FloatField()
    low = serializers.FloatField(allow_null=True, help_text="The 95% interval's ends; null where there is none.")
    high = serializers.FloatField(allow_null=True)
    n = serializers.IntegerField(allow_null=True, help_text="The examples it rests on.")


class CompareJobOutput(FineTuneListOutput):
    duration_s = serializers.SerializerMethodField(help_text="From start to finish (or to the last heartbeat).")
    tokens_per_second = serializers.FloatField(read_only=True, allow_null=True, help_text="The mean over its steps.")
    eval_loss_base = serializers.FloatField(
        source="base_eval_loss",
        read_only=True,
        allow_null=True,
        help_text="The trainer's validation loss, base model.",
    )
    eval_loss_tuned = serializers.FloatField(
        source="tuned_eval_loss", read_only=True, allow_null=True, help_text="The same, fine-tuned model."
    )
    evaluation_run = serializers.SerializerMethodField(
        help_text="Its latest succeeded evaluation run, whose metrics are compared; null when there is none."
    )

    class Meta(FineTuneListOutput.Meta):
        fields = [*FineTuneListOutput.Meta.fields, "duration_s", "tokens_per_second", "eval_loss_base",
                  "eval_loss_tuned", "evaluation_run"]  # fmt: skip

    @extend_schema_field(serializers.FloatField(allow_null=True))
    def get_duration_s(self, job: FineTuneJob) -> float | None:
        duration = job.duration  # type: ignore[attr-defined]
        return duration.total_seconds() if duration is not None else None

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_evaluation_run(self, job: FineTuneJob) -> int | None:
        run = self.context["runs"].get(job.pk)
        return run.pk if run is not None else None


class CompareCellOutput(serializers.Serializer):
    job = serializers.IntegerField()
    tuned = CompareEstimateOutput(allow_null=True, help_text="The fine-tuned model's (a judge's win rate: its own).")
    base = CompareEstimateOutput(allow_null=True, help_text="The base model's, where the metric has one.")


class CompareMetricOutput(serializers.Serializer):
    name = serializers.CharField(help_text="eval_loss, exact_match, rouge_l, chrf, json_valid, accuracy, macro_f1, "
                                           "win_rate_teacher, win_rate_base.")  # fmt: skip
    title = serializers.CharField(help_text="As the compare page names it.")
    kind = serializers.CharField(help_text="trainer (its validation loss), evaluation (answers scored) or judge.")
    values = CompareCellOutput(many=True, help_text="One per job, in the jobs' order.")


class CompareSettingOutput(serializers.Serializer):
    name = serializers.CharField(help_text="base_model, method, or a hyperparameter.")
    values = serializers.ListField(
        child=serializers.JSONField(allow_null=True),
        help_text="One per job, in the jobs' order; null where a job has no such setting.",
    )
    differs = serializers.BooleanField()


class CompareOutput(serializers.Serializer):
    jobs = CompareJobOutput(many=True)
    metrics = CompareMetricOutput(many=True)
    hyperparameters = CompareSettingOutput(many=True)


def comparison_body(comparison: Comparison) -> dict:
    ids = [job.pk for job in comparison.jobs]
    metrics = [
        {"name": row.name, "title": row.label, "kind": row.source,
         "values": [{"job": pk, "tuned": tuned, "base": base}
                    for pk, tuned, base in zip(ids, row.tuned, row.base, strict=True)]}
        for row in comparison.metrics
    ]  # fmt: skip
    settings = [{"name": row.name, "values": row.values, "differs": row.differs} for row in comparison.settings]
    return {
        "jobs": CompareJobOutput(comparison.jobs, many=True, context={"runs": comparison.runs}).data,
        "metrics": CompareMetricOutput(metrics, many=True).data,
        "hyperparameters": CompareSettingOutput(settings, many=True).data,
    }


class FineTunesCompareApi(ProjectScopedApi):
    @extend_schema(
        operation_id="finetunes_compare",
        summary="Fine-tunes compared: metrics with intervals, and the settings they differ in",
        description=(
            f"2 to {MAX_JOBS} fine-tunes of the project, in the order of `ids`: each job with its duration, mean "
            "tokens per second and the trainer's validation loss; each metric of the jobs' latest succeeded "
            "evaluation runs (and the judge's win rates) with its 95% interval and n; every setting, with `differs` "
            "where the jobs do not share it. An id given twice counts once; a fine-tune not in the project is a 404."
        ),
        parameters=[PROJECT_PARAMETER, IDS_PARAMETER],
        responses=CompareOutput,
    )  # fmt: skip
    def get(self, request: Request) -> Response:
        project = project_for_request(request)
        raw = request.query_params.get("ids", "")
        if not re.fullmatch(IDS_PATTERN, raw):
            raise exceptions.ValidationError(
                {"ids": [f"2 to {MAX_JOBS} fine-tune ids, comma-separated, without spaces: 3,5,8."]}
            )
        try:
            ids = compare_ids([raw])
        except DjangoValidationError as exc:
            raise exceptions.ValidationError(exc.message_dict) from None
        comparison = comparison_get(project=project, ids=ids)
        if comparison is None:
            raise exceptions.NotFound(f"A fine-tune of {raw} is not found in project '{project.slug}'.")
        return Response(comparison_body(comparison))
