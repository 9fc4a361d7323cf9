"""REST API v1 for fine-tunes: submit, estimate, watch, cancel, download, merge, and the playground."""

from collections.abc import Callable
from typing import Any, TypeVar

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import StreamingHttpResponse
from django.utils.http import content_disposition_header
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from curation.audit.services import audit_record
from curation.common.apis import (
    ID_MAX,
    PROJECT_PARAMETER,
    NotReadyResponse,
    ProjectScopedApi,
    is_whole_number,
    request_actor,
    whole_number_parameter,
)
from curation.common.listing import PAGE_PARAMETERS, page_body, page_cursor, page_of, page_size
from curation.common.pagination import keyset_page
from curation.common.permissions import project_for_request
from curation.models import Dataset, DatasetSnapshot, Project, Role
from training import selectors
from training.finetunes.deletion import (
    FineTuneBusy,
    FineTuneDeletion,
    finetune_delete,
    finetune_deletion_plan,
    finetune_weights_delete,
)
from training.finetunes.serializers import (
    BaseModelOutput,
    EstimateInput,
    ExampleLossOutput,
    FineTuneDeletionOutput,
    FineTuneInput,
    FineTuneListOutput,
    FineTuneOutput,
    MetricPointOutput,
    WeightsOutput,
)
from training.finetunes.services import (
    HYPERPARAMETERS,
    SERVER_FIELDS,
    finetune_cancel,
    finetune_create,
    finetune_estimate,
)
from training.models import BaseModel, FineTuneJob, FineTuneStatus

T = TypeVar("T")


NESTED_SETTINGS = {*HYPERPARAMETERS, *(name for name in SERVER_FIELDS if name != "method")}


PROJECT = PROJECT_PARAMETER


def bad_request(exc: DjangoValidationError) -> exceptions.ValidationError:
    errors = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
    nested = {name: messages for name, messages in errors.items() if name in NESTED_SETTINGS}
    body: dict = {name: messages for name, messages in errors.items() if name not in nested}
    if nested:
        body["hyperparameters"] = nested
    return exceptions.ValidationError(body)


class JobStateConflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


def state_call(call: Callable[..., T], /, *, job: FineTuneJob, **kwargs: Any) -> T:
    """Call a service acting on `job`. Its refusal because of the job's state (finished, not succeeded, weights
    deleted, a full fine-tune with nothing to merge) is a 409 with the job's status, as for a download that is not
    ready: the request was well formed, the job cannot take it now. Other refusals are 400s naming the field."""
    try:
        return call(job=job, **kwargs)
    except DjangoValidationError as exc:
        errors = exc.message_dict if hasattr(exc, "error_dict") else {}
        if errors and set(errors) <= {"status", "method"}:
            detail = " ".join(message for messages in errors.values() for message in messages)
            raise JobStateConflict({"detail": detail, "status": job.status}) from None
        raise bad_request(exc) from None


STATE_RESPONSE = OpenApiResponse(
    NotReadyResponse, description="The fine-tune is not in a state to do this (see `status`)."
)


def job_or_404(project: Project, job_id: int) -> FineTuneJob:
    job = selectors.finetune_get(project=project, job_id=job_id)
    if job is None:
        raise exceptions.NotFound(f"Fine-tune {job_id} not found in project '{project.slug}'.")
    return job


def _service_call(call: Callable[..., T], /, **kwargs: Any) -> T:
    """Call a service; its ValidationError becomes a 400 naming the field, hyperparameters nested under
    `hyperparameters` ({"hyperparameters": {"learning_rate": ["must be in (0, 1)"]}})."""
    try:
        return call(**kwargs)
    except DjangoValidationError as exc:
        raise bad_request(exc) from None


def _dataset_in(project: Project, dataset_id: int) -> Dataset:
    dataset = Dataset.objects.filter(project=project, pk=dataset_id).first()
    if dataset is None:
        raise exceptions.ValidationError({"dataset": [f"Dataset {dataset_id} not found in project '{project.slug}'."]})
    return dataset


class FineTunesApi(ProjectScopedApi):
    @extend_schema(
        operation_id="finetunes_list", summary="Fine-tunes, newest first",
        parameters=[*PAGE_PARAMETERS, whole_number_parameter("dataset", 0, ID_MAX, "Only this dataset's.")],
        responses=page_of("FineTunePage", FineTuneListOutput(many=True)),
    )  # fmt: skip
    def get(self, request: Request) -> Response:
        project = project_for_request(request)
        dataset = request.query_params.get("dataset", "")
        if dataset and not is_whole_number(dataset):
            raise exceptions.ValidationError({"dataset": ["A dataset id."]})
        jobs = selectors.finetunes_for_project(project=project, dataset_id=int(dataset) if dataset else None)
        page = keyset_page(jobs, cursor=page_cursor(request), size=page_size(request))
        return Response(page_body(page, FineTuneListOutput))

    @extend_schema(
        operation_id="finetunes_create",
        summary="Fine-tune a base model on a dataset",
        description=(
            "Trains on `snapshot`, or on a snapshot of the dataset frozen now. Hyperparameters are checked by the "
            "trainer's own config and stored with their defaults resolved. The job runs on a GPU worker; poll "
            "`GET /api/v1/finetunes/{id}` and `/metrics`. Needs the editor role."
        ),
        parameters=[PROJECT],
        request=FineTuneInput,
        responses={201: FineTuneOutput},
    )
    def post(self, request: Request) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        data = FineTuneInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        dataset = _dataset_in(project, values["dataset"])
        snapshot = None
        if values.get("snapshot") is not None:
            snapshot = DatasetSnapshot.objects.filter(project=project, pk=values["snapshot"]).first()
            if snapshot is None:
                raise exceptions.ValidationError({"snapshot": [f"Snapshot {values['snapshot']} not found."]})
        actor = request_actor(request)
        job = _service_call(
            finetune_create, dataset=dataset, base_model=values["base_model"], method=values["method"],
            hyperparameters=values["hyperparameters"], snapshot=snapshot, created_by=actor["actor"],
            api_key=actor["api_key"],
        )  # fmt: skip
        return Response(FineTuneOutput(selectors.finetune_get(project=project, job_id=job.pk)).data, status=201)


class FineTuneEstimateApi(ProjectScopedApi):
    @extend_schema(
        operation_id="finetunes_estimate",
        summary="Examples, tokens, steps, time and cost a fine-tune would take",
        description="From the dataset's entries as they are now and their estimated tokens (about 4 characters each), "
        "over the base model's default hyperparameters. Time: at the rate of the base model's last fine-tune that "
        "succeeded (null before one); cost: with LOGTUNE_GPU_HOUR_USD set.",
        parameters=[PROJECT],
        request=EstimateInput,
        responses=inline_serializer("Estimate", {
            "examples": serializers.IntegerField(), "validation_examples": serializers.IntegerField(),
            "tokens": serializers.IntegerField(), "steps": serializers.IntegerField(),
            "steps_per_epoch": serializers.IntegerField(), "processes": serializers.IntegerField(),
            "minimum_examples": serializers.IntegerField(), "can_start": serializers.BooleanField(),
            "warning": serializers.CharField(), "tokens_per_second": serializers.FloatField(allow_null=True),
            "seconds": serializers.FloatField(allow_null=True), "cost_usd": serializers.FloatField(allow_null=True),
        }),
    )  # fmt: skip
    def post(self, request: Request) -> Response:
        project = project_for_request(request)
        data = EstimateInput(data=request.data)
        data.is_valid(raise_exception=True)
        dataset = _dataset_in(project, data.validated_data["dataset"])
        estimate = _service_call(finetune_estimate, dataset=dataset, method=data.validated_data["method"],
                                 hyperparameters=data.validated_data["hyperparameters"],
                                 base_model=data.validated_data.get("base_model"))  # fmt: skip
        return Response(estimate)


_BUSY = OpenApiResponse(
    NotReadyResponse, description="The fine-tune, a merge of its adapter or a playground answer is queued or running."
)


def _busy(job: FineTuneJob, exc: FineTuneBusy) -> Response:
    return Response({"detail": " ".join(exc.messages), "status": job.status}, status=status.HTTP_409_CONFLICT)


def _weights(job: FineTuneJob, plan: FineTuneDeletion) -> dict:
    deleted_by = job.weights_deleted_by_label if job.weights_deleted_at is not None else None
    body = {"weights": plan.weights, "weights_bytes": plan.weights_bytes, "deleted_at": job.weights_deleted_at,
            "deleted_by": deleted_by}  # fmt: skip
    return WeightsOutput(body).data


class FineTuneDetailApi(ProjectScopedApi):
    @extend_schema(operation_id="finetunes_retrieve", summary="A fine-tune: status, progress, ETA, evaluation",
                   parameters=[PROJECT], responses=FineTuneOutput)  # fmt: skip
    def get(self, request: Request, job_id: int) -> Response:
        project = project_for_request(request)
        return Response(FineTuneOutput(job_or_404(project, job_id)).data)

    @extend_schema(
        operation_id="finetunes_destroy",
        summary="Delete a fine-tune: its folder (weights, merged weights, checkpoints), metrics and the job",
        description=(
            "Removes the job's folder with everything in it, its metric points, per-example losses and playground "
            "answers, and the job; and the snapshot it trained on when its dataset is gone and no other fine-tune "
            "trained on it. The answer says what was removed. Refused (409) while the job, a merge or a playground "
            "answer is queued or running. Audited as `finetune.delete`. Needs the editor role."
        ),
        parameters=[PROJECT], responses={200: FineTuneDeletionOutput, 409: _BUSY},
    )  # fmt: skip
    def delete(self, request: Request, job_id: int) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        job = job_or_404(project, job_id)
        try:
            plan = finetune_delete(job=job, **request_actor(request))
        except FineTuneBusy as exc:
            return _busy(job, exc)
        return Response(FineTuneDeletionOutput(plan).data)


class FineTuneWeightsApi(ProjectScopedApi):
    @extend_schema(
        operation_id="finetunes_weights",
        summary="The weights of a fine-tune on disk, and when they were deleted",
        parameters=[PROJECT], responses=WeightsOutput,
    )  # fmt: skip
    def get(self, request: Request, job_id: int) -> Response:
        project = project_for_request(request)
        job = job_or_404(project, job_id)
        return Response(_weights(job, finetune_deletion_plan(job=job)))

    @extend_schema(
        operation_id="finetunes_weights_destroy",
        summary="Delete only the weights of a fine-tune (adapter, merged weights, checkpoints)",
        description=(
            "Frees the disk and keeps the job, its metrics, evaluation and per-example losses; the job then says "
            "when and by whom (`weights_deleted_at`, `weights_deleted_by`), and downloads, merges and the playground "
            "are refused. Asking again changes nothing. Refused (409) while the job, a merge or a playground answer "
            "is queued or running. Audited as `finetune.weights_delete`. Needs the editor role."
        ),
        parameters=[PROJECT], responses={200: WeightsOutput, 409: _BUSY},
    )  # fmt: skip
    def delete(self, request: Request, job_id: int) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        job = job_or_404(project, job_id)
        try:
            plan = finetune_weights_delete(job=job, **request_actor(request))
        except FineTuneBusy as exc:
            return _busy(job, exc)
        job.refresh_from_db()
        return Response(_weights(job, plan))


class FineTuneMetricsApi(ProjectScopedApi):
    @extend_schema(
        operation_id="finetunes_metrics",
        summary="Training and evaluation points after a step",
        description=(
            "Points with `step` > `after` (default: all), by step. Training steps carry `train_loss`, "
            "`learning_rate`, `tokens_per_second`; evaluations `eval_loss` (step 0: the base model). Poll with "
            "`after=next_after`: it re-reads the last step, whose evaluation can land after its training "
            "point. `attempt` changes when a job resumes after its worker died; start over then."
        ),
        parameters=[PROJECT, whole_number_parameter("after", -1, ID_MAX, "A step; -1 or left out for all.")],
        responses=inline_serializer("Metrics", {
            "status": serializers.CharField(), "attempt": serializers.IntegerField(),
            "step": serializers.IntegerField(), "total_steps": serializers.IntegerField(),
            "points": MetricPointOutput(many=True), "next_after": serializers.IntegerField(),
        }),
    )  # fmt: skip
    def get(self, request: Request, job_id: int) -> Response:
        project = project_for_request(request)
        job = job_or_404(project, job_id)
        raw = request.query_params.get("after", "-1")
        if not (raw == "-1" or is_whole_number(raw)):
            raise exceptions.ValidationError({"after": ["A step number, or -1 for all."]})
        after = int(raw)
        points = selectors.metrics_after(job=job, after=after)
        last = points[-1].step if points else None
        return Response({
            "status": job.status, "attempt": job.attempts, "step": job.step, "total_steps": job.total_steps,
            "points": MetricPointOutput(points, many=True).data,
            "next_after": max(after, last - 1) if last is not None else after,
        })  # fmt: skip


class FineTuneCancelApi(ProjectScopedApi):
    @extend_schema(
        operation_id="finetunes_cancel",
        summary="Cancel a fine-tune",
        description="A queued job is cancelled at once; a running one stops after its current step (within "
                    "seconds; it is terminated after a grace period). Needs the editor role.",
        parameters=[PROJECT], request=None, responses={200: FineTuneOutput, 409: STATE_RESPONSE},
    )  # fmt: skip
    def post(self, request: Request, job_id: int) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        job = state_call(finetune_cancel, job=job_or_404(project, job_id), **request_actor(request))
        return Response(FineTuneOutput(job).data)


def _artifact(request: Request, job_id: int, merged: bool) -> StreamingHttpResponse | Response:
    project = project_for_request(request, role=Role.EDITOR)  # weights trained on the project's data: an export
    job = job_or_404(project, job_id)
    if job.weights_deleted_at is not None:
        when = job.weights_deleted_at.strftime("%Y-%m-%d %H:%M UTC")
        detail = f"The weights of fine-tune {job.pk} were deleted on {when} by {job.weights_deleted_by_label}."
        return Response({"detail": detail, "status": job.status}, status=409)
    directory = job.merged_dir if merged else job.adapter_dir
    ready = job.merge_status == FineTuneStatus.SUCCEEDED if merged else job.status == FineTuneStatus.SUCCEEDED
    if not ready or not directory.is_dir():
        what = "merged weights" if merged else "adapter"
        return Response({"detail": f"Fine-tune {job.pk} has no {what} (yet).", "status": job.status}, status=409)
    name = f"finetune-{job.pk}-{'merged' if merged else 'adapter'}"
    audit_record(project=project, action="finetune.download", detail={"job_id": job.pk, "what": name},
                 **request_actor(request))  # fmt: skip
    response = StreamingHttpResponse(selectors.artifact_zip(directory=directory, root=name),
                                     content_type="application/zip")  # fmt: skip
    response["Content-Disposition"] = content_disposition_header(True, f"{name}.zip")
    return response


_ZIP = {(200, "application/zip"): OpenApiTypes.BINARY, 409: NotReadyResponse}


class FineTuneAdapterApi(ProjectScopedApi):
    @extend_schema(operation_id="finetunes_adapter", summary="Download the adapter (or full weights) as a zip",
                   parameters=[PROJECT], responses=_ZIP)  # fmt: skip
    def get(self, request: Request, job_id: int) -> StreamingHttpResponse | Response:
        return _artifact(request, job_id, merged=False)


class FineTuneMergedApi(ProjectScopedApi):
    @extend_schema(operation_id="finetunes_merged", summary="Download the merged weights as a zip",
                   parameters=[PROJECT], responses=_ZIP)  # fmt: skip
    def get(self, request: Request, job_id: int) -> StreamingHttpResponse | Response:
        return _artifact(request, job_id, merged=True)


class FineTuneLossesApi(ProjectScopedApi):
    @extend_schema(
        operation_id="finetunes_losses", summary="Per-example losses, highest first (the likeliest bad labels)",
        parameters=[PROJECT, whole_number_parameter("limit", 1, 1000, "1–1000, default 100.")],
        responses=ExampleLossOutput(many=True),
    )  # fmt: skip
    def get(self, request: Request, job_id: int) -> Response:
        project = project_for_request(request)
        job = job_or_404(project, job_id)
        limit = request.query_params.get("limit", "100")
        if not is_whole_number(limit) or not 1 <= int(limit) <= 1000:
            raise exceptions.ValidationError({"limit": ["From 1 to 1000."]})
        return Response(ExampleLossOutput(selectors.example_losses_top(job=job, limit=int(limit)), many=True).data)


class BaseModelsApi(ProjectScopedApi):
    @extend_schema(operation_id="base_models_list", summary="Base models on offer", parameters=[PROJECT],
                   responses=BaseModelOutput(many=True))  # fmt: skip
    def get(self, request: Request) -> Response:
        project_for_request(request)
        registered = {row.name: row for row in BaseModel.objects.all()}
        models = [
            {"name": name, "description": registered[name].description if name in registered else "",
             "registered": name in registered,
             "default_hyperparameters": registered[name].default_hyperparameters if name in registered else {}}
            for name, _ in selectors.base_model_choices()
        ]  # fmt: skip
        return Response(BaseModelOutput(models, many=True).data)
