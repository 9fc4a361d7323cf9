"""REST API of bulk actions: `POST /api/v1/logs/bulk` (a selection or a filter, with a dry run) and bulk jobs."""

from urllib.parse import urlencode

from django.http import QueryDict
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from curation.common.apis import FilterField, IdField, ProjectScopedApi, StrictInput, request_actor
from curation.common.permissions import project_for_request
from curation.logs.bulk import services as bulk_services
from curation.logs.bulk.selectors import bulk_review
from curation.logs.filters import FILTER_PARAMS
from curation.models import BulkAction, BulkJob, Project, Role


def _filter_query(value: object) -> str:
    """A filter given as a query string ("model=gpt-4o&tag=math") or an object of the same
    parameters, checked against the filter language, as a query string."""
    if isinstance(value, dict):
        query = urlencode(value, doseq=True)
    elif isinstance(value, str):
        query = value.lstrip("?")
    else:
        raise exceptions.ValidationError({"filter": ["A query string or an object of filter parameters."]})
    unknown = sorted(set(QueryDict(query)) - FILTER_PARAMS)
    if unknown:
        raise exceptions.ValidationError({"filter": [f"Unknown filter parameter '{unknown[0]}'."]})
    return query


class BulkJobOutput(serializers.ModelSerializer):
    progress = serializers.FloatField()

    class Meta:
        model = BulkJob
        fields = ["id", "action", "query", "params", "status", "progress", "total", "done", "changed", "error",
                  "created_at", "finished_at"]  # fmt: skip


_IN_DATASETS = "A deletion: how many of the logs are in datasets (their entries keep their copies)."


class BulkJobStartedOutput(BulkJobOutput):
    in_datasets = serializers.IntegerField(required=False, help_text=_IN_DATASETS)

    class Meta(BulkJobOutput.Meta):
        fields = [*BulkJobOutput.Meta.fields, "in_datasets"]


BULK_RESPONSES = {
    200: inline_serializer(
        "BulkResult",
        {
            "changed": serializers.IntegerField(required=False, help_text="Logs changed (not in a dry run)."),
            "matched": serializers.IntegerField(
                required=False, help_text="Logs the filter matched (a filter, or a dry run)."
            ),
            "in_datasets": serializers.IntegerField(required=False, help_text=_IN_DATASETS),
            "dry_run": serializers.BooleanField(required=False),
        },
    ),
    202: BulkJobStartedOutput,
}


def _selection(body: object) -> tuple[list[int] | None, str]:
    """(ids, "") for a selection, (None, filter query) for every log matching a filter."""
    if not isinstance(body, dict) or ("log_ids" in body) == ("filter" in body):
        raise exceptions.ValidationError({"detail": ["Give exactly one of 'log_ids' (a list) or 'filter'."]})
    if "filter" in body:
        return None, _filter_query(body["filter"])
    ids = body["log_ids"]
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise exceptions.ValidationError({"log_ids": ["A list of log ids."]})
    return ids, ""


def bulk_response(
    request: Request, project: Project, action: str, params: dict, body: object, *, dry_run: bool = False
) -> Response:
    """Validate a bulk action's selection, run it (`bulk_action_run`) or count it (`dry_run`), and answer."""
    ids, query = _selection(body)
    # Deleting logs leaves the entries copied from them in their datasets: say how many logs that concerns.
    deleting = action == BulkAction.DELETE
    if dry_run:
        bulk_services.bulk_params_check(project=project, action=action, params=params)
        review = bulk_review(project=project, action=action, ids=ids, query=query)
        extra = {"in_datasets": review.in_datasets} if deleting else {}
        return Response({"dry_run": True, "matched": review.matched, **extra})
    outcome = bulk_services.bulk_action_run(
        project=project, action=action, params=params, ids=ids, query=query, **request_actor(request)
    )
    extra = {"in_datasets": outcome.in_datasets} if deleting else {}
    if outcome.job is not None:
        return Response({**BulkJobOutput(outcome.job).data, **extra}, status=status.HTTP_202_ACCEPTED)
    if ids is not None:
        return Response({"changed": outcome.changed, **extra})
    return Response({"changed": outcome.changed, "matched": outcome.matched, **extra})


class LogsBulkApi(ProjectScopedApi):
    class Input(StrictInput):
        action = serializers.ChoiceField(choices=BulkAction.choices)
        tags = serializers.ListField(child=serializers.CharField(), required=False)
        dataset = IdField(required=False)
        log_ids = serializers.ListField(child=IdField(), required=False)
        filter = FilterField(required=False)
        dry_run = serializers.BooleanField(
            default=False, help_text="Count what the action would touch; change nothing."
        )

    @extend_schema(
        operation_id="logs_bulk",
        summary="Tag, untag, delete or add to a dataset: a selection or every log matching a filter",
        description=(
            "Up to 5,000 matching logs are changed at once (200 with `changed`); more run as a job (202). With "
            "`dry_run`, nothing changes and the answer counts the logs `matched`. A deletion (dry run or not) also "
            "answers `in_datasets`: how many of the logs are in datasets, whose entries keep their copies and "
            "record when and by whom their source log was deleted."
        ),
        request=Input,
        responses=BULK_RESPONSES,
    )
    def post(self, request: Request) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        action = data.validated_data["action"]
        params = {key: data.validated_data[key] for key in ("tags", "dataset") if key in data.validated_data}
        body = {key: data.validated_data[key] for key in ("log_ids", "filter") if key in data.validated_data}
        return bulk_response(request, project, action, params, body, dry_run=data.validated_data["dry_run"])


class BulkJobApi(ProjectScopedApi):
    @extend_schema(operation_id="bulk_jobs_retrieve", summary="A bulk job and its progress", responses=BulkJobOutput)
    def get(self, request: Request, job_id: int) -> Response:
        project = project_for_request(request)
        job = BulkJob.objects.filter(project=project, pk=job_id).first()
        if job is None:
            raise exceptions.NotFound(f"Bulk job {job_id} not found in project '{project.slug}'.")
        return Response(BulkJobOutput(job).data)
