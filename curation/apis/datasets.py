"""REST API v1 for datasets, their entries, bulk actions on logs, and tags."""

from urllib.parse import urlencode

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Count
from django.http import QueryDict
from django.urls import reverse
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from curation import pii
from curation.apis.common import (
    ErrorResponse,
    FilterField,
    IdField,
    JSONObjectListField,
    ProjectScopedApi,
    StrictInput,
    is_whole_number,
    request_actor,
)
from curation.filters import FILTER_PARAMS, logs_filter
from curation.models import (
    BulkAction,
    BulkJob,
    Dataset,
    DatasetEntry,
    LogEntry,
    Project,
    RedactionJob,
    Role,
    Split,
    Tag,
)
from curation.permissions import project_for_request
from curation.selectors import logs_in_datasets_count
from curation.services import bulk as bulk_services
from curation.services.datasets import (
    dataset_create,
    dataset_delete,
    dataset_split,
    dataset_update,
    entries_delete,
    entry_set_split,
    entry_update,
)
from curation.services.redaction import INLINE_LIMIT as REDACT_INLINE_LIMIT
from curation.services.redaction import dataset_redact_or_queue, redaction_preview
from curation.services.tags import tag_delete, tag_merge, tag_update

ENTRY_PAGE_MAX = 500


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


def _dataset_or_404(project: Project, dataset_id: int) -> Dataset:
    dataset = Dataset.objects.filter(project=project, pk=dataset_id).first()
    if dataset is None:
        raise exceptions.NotFound(f"Dataset {dataset_id} not found in project '{project.slug}'.")
    return dataset


class DatasetOutput(serializers.ModelSerializer):
    entries = serializers.IntegerField(source="entry_count", read_only=True)

    class Meta:
        model = Dataset
        fields = ["id", "name", "description", "entries", "split_seed", "validation_ratio", "created_at", "updated_at"]


DatasetDeletionOutput = inline_serializer(
    "DatasetDeletion",
    {
        "deleted": inline_serializer(
            "DatasetDeleted", {"entries": serializers.IntegerField(), "snapshots": serializers.IntegerField()}
        ),
        "kept": inline_serializer(
            "DatasetKept",
            {
                "finetunes": serializers.IntegerField(),
                "snapshots": serializers.IntegerField(help_text="Those the kept fine-tunes trained on."),
            },
        ),
        "summary": serializers.CharField(
            help_text='"Deleted 1,204 entries and 2 snapshots. Kept 3 fine-tunes (their weights, metrics and the '
            '1 snapshot they trained on) and the logs."'
        ),
    },
)


class DatasetInput(StrictInput):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")


class DatasetPatchInput(StrictInput):
    name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(required=False, allow_blank=True)


class EntryOutput(serializers.ModelSerializer):
    source_deleted_by = serializers.SerializerMethodField(
        help_text="Who deleted the source log (a user's name or a key's prefix); null unless it was deleted."
    )

    class Meta:
        model = DatasetEntry
        fields = ["id", "log", "source_log_id", "source_deleted_at", "source_deleted_by", "split", "edited", "model",
                  "turns", "est_tokens", "messages", "tools", "updated_at"]  # fmt: skip
        extra_kwargs = {"source_log_id": {"help_text": "The id of the source log once it is deleted (`log` is null)."}}

    def get_source_deleted_by(self, entry: DatasetEntry) -> str | None:
        return entry.source_deleted_by_label if entry.source_deleted else None


class EntryPatchInput(StrictInput):
    messages = JSONObjectListField(required=False)
    tools = JSONObjectListField(required=False)
    split = serializers.ChoiceField(choices=Split.choices, required=False)


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


_BULK_RESPONSES = {
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


def _datasets(project: Project):
    return Dataset.objects.filter(project=project).annotate(entry_count=Count("entries"))


class DatasetsApi(ProjectScopedApi):
    @extend_schema(operation_id="datasets_list", summary="Datasets", responses=DatasetOutput(many=True))
    def get(self, request: Request) -> Response:
        project = project_for_request(request)
        return Response(DatasetOutput(_datasets(project), many=True).data)

    @extend_schema(operation_id="datasets_create", summary="Create a dataset", request=DatasetInput,
                   responses={201: DatasetOutput})  # fmt: skip
    def post(self, request: Request) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        data = DatasetInput(data=request.data)
        data.is_valid(raise_exception=True)
        who = request_actor(request)
        dataset = dataset_create(
            project=project, created_by=who["actor"], api_key=who["api_key"], **data.validated_data
        )
        return Response(DatasetOutput(_datasets(project).get(pk=dataset.pk)).data, status=status.HTTP_201_CREATED)


class DatasetDetailApi(ProjectScopedApi):
    @extend_schema(operation_id="datasets_retrieve", summary="A dataset", responses=DatasetOutput)
    def get(self, request: Request, dataset_id: int) -> Response:
        project = project_for_request(request)
        _dataset_or_404(project, dataset_id)
        return Response(DatasetOutput(_datasets(project).get(pk=dataset_id)).data)

    @extend_schema(operation_id="datasets_update", summary="Rename or describe", request=DatasetPatchInput,
                   responses=DatasetOutput)  # fmt: skip
    def patch(self, request: Request, dataset_id: int) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        dataset = _dataset_or_404(project, dataset_id)
        data = DatasetPatchInput(data=request.data)
        data.is_valid(raise_exception=True)
        dataset_update(dataset=dataset, **data.validated_data, **request_actor(request))
        return Response(DatasetOutput(_datasets(project).get(pk=dataset_id)).data)

    @extend_schema(
        operation_id="datasets_destroy",
        summary="Delete a dataset: its entries and unused snapshots (its fine-tunes and logs stay)",
        description=(
            "Deletes the entries and the snapshots no fine-tune trained on (with their files). Keeps the dataset's "
            "fine-tunes with their weights, metrics and the snapshots they trained on (which keep the dataset's "
            "name: `dataset_deleted` on both), and the logs. The answer says what went and what stayed. Refused "
            "(409) while one of its fine-tunes is queued or running. Audited as `dataset.delete`."
        ),
        responses={200: DatasetDeletionOutput, 409: ErrorResponse},
    )
    def delete(self, request: Request, dataset_id: int) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        dataset = _dataset_or_404(project, dataset_id)
        try:
            plan = dataset_delete(dataset=dataset, **request_actor(request))
        except DjangoValidationError as exc:  # a fine-tune of it is queued or running: not now
            return Response({"detail": " ".join(exc.messages)}, status=status.HTTP_409_CONFLICT)
        return Response({**plan.as_dict(), "summary": plan.summary(done=True)})


class EntriesAddInput(StrictInput):
    log_ids = serializers.ListField(child=IdField(), required=False)
    filter = FilterField(required=False, help_text="Query string or object of log filters.")


class DatasetEntriesApi(ProjectScopedApi):
    @extend_schema(
        operation_id="dataset_entries_list",
        summary="Entries, by id",
        responses=inline_serializer(
            "EntryPage", {"results": EntryOutput(many=True), "next_after": serializers.IntegerField(allow_null=True)}
        ),
    )
    def get(self, request: Request, dataset_id: int) -> Response:
        project = project_for_request(request)
        dataset = _dataset_or_404(project, dataset_id)
        entries = (
            DatasetEntry.objects.filter(dataset=dataset)
            .select_related("source_deleted_by", "source_deleted_by_key")
            .order_by("id")
        )
        params = request.query_params
        if params.get("split"):
            if params["split"] not in Split.values:
                raise exceptions.ValidationError({"split": [f"One of {', '.join(Split.values)}."]})
            entries = entries.filter(split=params["split"])
        if params.get("q"):
            entries = entries.filter(search_text__trgm_icontains=params["q"])
        after, limit = params.get("after", "0"), params.get("limit", "100")
        if not is_whole_number(after) or not is_whole_number(limit) or not 1 <= int(limit) <= ENTRY_PAGE_MAX:
            raise exceptions.ValidationError({"limit": [f"after: an entry id; limit: 1 to {ENTRY_PAGE_MAX}."]})
        page = list(entries.filter(id__gt=int(after))[: int(limit) + 1])
        more = len(page) > int(limit)
        page = page[: int(limit)]
        return Response({"results": EntryOutput(page, many=True).data, "next_after": page[-1].pk if more else None})

    @extend_schema(
        operation_id="dataset_entries_add",
        summary="Add logs by ids or by filter",
        description="A log already in the dataset is not added twice. Large filters run as a bulk job (202).",
        request=EntriesAddInput,
        responses=_BULK_RESPONSES,
    )
    def post(self, request: Request, dataset_id: int) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        dataset = _dataset_or_404(project, dataset_id)
        data = EntriesAddInput(data=request.data)
        data.is_valid(raise_exception=True)
        return _bulk(request, project, BulkAction.DATASET_ADD, {"dataset": dataset.pk}, data.validated_data)


class DatasetEntryApi(ProjectScopedApi):
    def _entry(self, request: Request, dataset_id: int, entry_id: int, role: str) -> DatasetEntry:
        project = project_for_request(request, role=role)
        dataset = _dataset_or_404(project, dataset_id)
        entry = (
            DatasetEntry.objects.select_related("log", "source_deleted_by", "source_deleted_by_key")
            .filter(dataset=dataset, pk=entry_id)
            .first()
        )
        if entry is None:
            raise exceptions.NotFound(f"Entry {entry_id} not found in dataset {dataset_id}.")
        return entry

    @extend_schema(operation_id="dataset_entry_retrieve", summary="An entry", responses=EntryOutput)
    def get(self, request: Request, dataset_id: int, entry_id: int) -> Response:
        return Response(EntryOutput(self._entry(request, dataset_id, entry_id, Role.VIEWER)).data)

    @extend_schema(operation_id="dataset_entry_update", summary="Edit an entry's conversation or split",
                   request=EntryPatchInput, responses=EntryOutput)  # fmt: skip
    def patch(self, request: Request, dataset_id: int, entry_id: int) -> Response:
        entry = self._entry(request, dataset_id, entry_id, Role.EDITOR)
        data = EntryPatchInput(data=request.data)
        data.is_valid(raise_exception=True)
        if "messages" in data.validated_data or "tools" in data.validated_data:
            entry_update(
                entry=entry,
                messages=data.validated_data.get("messages", entry.messages),
                tools=data.validated_data.get("tools", entry.tools),
                **request_actor(request),
            )
        if "split" in data.validated_data:
            entry_set_split(entry=entry, split=data.validated_data["split"], **request_actor(request))
        return Response(EntryOutput(entry).data)

    @extend_schema(operation_id="dataset_entry_destroy", summary="Delete an entry", responses={204: None})
    def delete(self, request: Request, dataset_id: int, entry_id: int) -> Response:
        entry = self._entry(request, dataset_id, entry_id, Role.EDITOR)
        entries_delete(dataset=entry.dataset, ids=[entry.pk], **request_actor(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class DatasetSplitApi(ProjectScopedApi):
    class Input(StrictInput):
        validation_ratio = serializers.FloatField(min_value=0, max_value=0.99)
        seed = serializers.IntegerField(default=0, min_value=-(2**31), max_value=2**31 - 1)  # stored: a 32-bit column

    @extend_schema(
        operation_id="dataset_split",
        summary="Split train/validation by ratio and seed",
        request=Input,
        responses=inline_serializer(
            "SplitResult",
            {
                "train": serializers.IntegerField(),
                "validation": serializers.IntegerField(),
                "validation_ratio": serializers.FloatField(),
                "seed": serializers.IntegerField(),
            },
        ),
    )
    def post(self, request: Request, dataset_id: int) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        dataset = _dataset_or_404(project, dataset_id)
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        train, validation = dataset_split(dataset=dataset, **data.validated_data, **request_actor(request))
        return Response({"train": train, "validation": validation, **data.validated_data})


class RedactionJobOutput(serializers.ModelSerializer):
    progress = serializers.FloatField()
    url = serializers.SerializerMethodField(help_text="Where to follow the job.")

    class Meta:
        model = RedactionJob
        fields = ["id", "status", "progress", "kinds", "total", "done", "changed", "error", "created_at", "started_at",
                  "finished_at", "url"]  # fmt: skip

    def get_url(self, job: RedactionJob) -> str:
        url = reverse("api-dataset-redaction-job", kwargs={"dataset_id": job.dataset_id, "job_id": job.pk})
        return f"{url}?project={self.context['project'].slug}"


class DatasetRedactApi(ProjectScopedApi):
    class Input(StrictInput):
        kinds = serializers.ListField(
            child=serializers.ChoiceField(choices=pii.KINDS),
            allow_empty=False,
            min_length=1,
            required=False,
            default=list(pii.KINDS),
        )
        dry_run = serializers.BooleanField(default=True)

    class Output(serializers.Serializer):
        dry_run = serializers.BooleanField()
        kinds = serializers.ListField(child=serializers.CharField())
        changed = serializers.IntegerField(help_text="Entries that change (dry run: would change).")
        entries = serializers.IntegerField(required=False, help_text="Dry run: the entries scanned.")
        counts = serializers.DictField(
            child=serializers.IntegerField(), required=False, help_text="Dry run: findings per kind."
        )
        samples = inline_serializer(
            "RedactionSample",
            {
                "entry_id": serializers.IntegerField(),
                "findings": inline_serializer(
                    "RedactionFinding",
                    {
                        "field": serializers.CharField(),
                        "kind": serializers.CharField(),
                        "reason": serializers.CharField(),
                    },
                    many=True,
                ),
                "diff": inline_serializer(
                    "RedactionDiffLine", {"kind": serializers.CharField(), "text": serializers.CharField()}, many=True
                ),
            },
            many=True,
            required=False,
        )

    @extend_schema(
        operation_id="dataset_redact",
        summary="Replace personal data in the entries with placeholders (dry run: preview)",
        description=f"A dataset of up to {REDACT_INLINE_LIMIT:,} entries is redacted at once (200 with `changed`); a "
        "larger one by a worker (202 with the job: follow its `url`). While a redaction job of the dataset is queued "
        "or running, a redaction answers 202 with that job and starts nothing.",
        request=Input,
        responses={200: Output, 202: RedactionJobOutput},
    )
    def post(self, request: Request, dataset_id: int) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        dataset = _dataset_or_404(project, dataset_id)
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        kinds = data.validated_data["kinds"]
        if not data.validated_data["dry_run"]:
            result = dataset_redact_or_queue(dataset=dataset, kinds=kinds, **request_actor(request))
            if isinstance(result, RedactionJob):
                body = RedactionJobOutput(result, context={"project": project}).data
                return Response(body, status=status.HTTP_202_ACCEPTED)
            return Response({"dry_run": False, "kinds": kinds, "changed": result})
        preview = redaction_preview(dataset=dataset, kinds=kinds)
        samples = [
            {
                "entry_id": sample.entry_id,
                "findings": [{"field": f.field, "kind": f.kind, "reason": f.reason} for f in sample.findings],
                "diff": [{"kind": line.kind, "text": line.text} for line in sample.diff.lines],
            }
            for sample in preview.samples
        ]
        return Response(
            {"dry_run": True, "kinds": preview.kinds, "changed": preview.changed, "entries": preview.entries,
             "counts": preview.counts, "samples": samples}
        )  # fmt: skip


class DatasetRedactionJobApi(ProjectScopedApi):
    @extend_schema(
        operation_id="dataset_redaction_job_retrieve",
        summary="A redaction job of the dataset and its progress",
        responses=RedactionJobOutput,
    )
    def get(self, request: Request, dataset_id: int, job_id: int) -> Response:
        project = project_for_request(request)
        dataset = _dataset_or_404(project, dataset_id)
        job = dataset.redaction_jobs.filter(pk=job_id).first()
        if job is None:
            raise exceptions.NotFound(f"Redaction job {job_id} not found for dataset {dataset_id}.")
        return Response(RedactionJobOutput(job, context={"project": project}).data)


# --- Bulk actions on logs ---------------------------------------------------------------------------


def _bulk(
    request: Request, project: Project, action: str, params: dict, body: object, *, dry_run: bool = False
) -> Response:
    if not isinstance(body, dict) or ("log_ids" in body) == ("filter" in body):
        raise exceptions.ValidationError({"detail": ["Give exactly one of 'log_ids' (a list) or 'filter'."]})
    who = request_actor(request)
    if "log_ids" in body:
        ids = body["log_ids"]
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise exceptions.ValidationError({"log_ids": ["A list of log ids."]})
        query = ""
        logs = LogEntry.objects.filter(project=project, id__in=ids)
    else:
        query = _filter_query(body["filter"])
        logs = logs_filter(project=project, params=QueryDict(query))
    # Deleting logs leaves the entries copied from them in their datasets: say how many logs that concerns.
    extra = {"in_datasets": logs_in_datasets_count(logs=logs)} if action == BulkAction.DELETE else {}
    if dry_run:
        bulk_services.bulk_params_check(project=project, action=action, params=params)
        return Response({"dry_run": True, "matched": logs.count(), **extra})
    if "log_ids" in body:
        changed = bulk_services.bulk_apply_to_ids(project=project, action=action, params=params, ids=ids, **who)
        return Response({"changed": changed, **extra})
    if logs.count() <= bulk_services.INLINE_LIMIT:
        ids = list(logs.values_list("id", flat=True))
        changed = bulk_services.bulk_apply_to_ids(
            project=project, action=action, params=params, ids=ids, query=query, **who
        )
        return Response({"changed": changed, "matched": len(ids), **extra})
    job = bulk_services.bulk_job_create(project=project, action=action, params=params, query=query, **who)
    return Response({**BulkJobOutput(job).data, **extra}, status=status.HTTP_202_ACCEPTED)


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
        responses=_BULK_RESPONSES,
    )
    def post(self, request: Request) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        action = data.validated_data["action"]
        params = {key: data.validated_data[key] for key in ("tags", "dataset") if key in data.validated_data}
        body = {key: data.validated_data[key] for key in ("log_ids", "filter") if key in data.validated_data}
        return _bulk(request, project, action, params, body, dry_run=data.validated_data["dry_run"])


class BulkJobApi(ProjectScopedApi):
    @extend_schema(operation_id="bulk_jobs_retrieve", summary="A bulk job and its progress", responses=BulkJobOutput)
    def get(self, request: Request, job_id: int) -> Response:
        project = project_for_request(request)
        job = BulkJob.objects.filter(project=project, pk=job_id).first()
        if job is None:
            raise exceptions.NotFound(f"Bulk job {job_id} not found in project '{project.slug}'.")
        return Response(BulkJobOutput(job).data)


# --- Tags -------------------------------------------------------------------------------------------


class TagOutput(serializers.ModelSerializer):
    logs = serializers.IntegerField(source="log_count", read_only=True)

    class Meta:
        model = Tag
        fields = ["id", "name", "color", "logs"]


def _tag_or_404(project: Project, tag_id: int) -> Tag:
    tag = Tag.objects.filter(project=project, pk=tag_id).first()
    if tag is None:
        raise exceptions.NotFound(f"Tag {tag_id} not found in project '{project.slug}'.")
    return tag


class TagsApi(ProjectScopedApi):
    @extend_schema(operation_id="tags_list", summary="Tags with their log counts", responses=TagOutput(many=True))
    def get(self, request: Request) -> Response:
        project = project_for_request(request)
        tags = Tag.objects.filter(project=project).annotate(log_count=Count("logs"))
        return Response(TagOutput(tags, many=True).data)


class TagDetailApi(ProjectScopedApi):
    class Input(StrictInput):
        name = serializers.CharField(required=False)
        color = serializers.RegexField(r"^#[0-9a-fA-F]{6}$", required=False, help_text="#rrggbb")

    @extend_schema(operation_id="tags_update", summary="Rename or recolour", request=Input, responses=TagOutput)
    def patch(self, request: Request, tag_id: int) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        tag = tag_update(tag=_tag_or_404(project, tag_id), **data.validated_data, **request_actor(request))
        return Response(TagOutput(Tag.objects.annotate(log_count=Count("logs")).get(pk=tag.pk)).data)

    @extend_schema(operation_id="tags_destroy", summary="Delete a tag (the logs stay)", responses={204: None})
    def delete(self, request: Request, tag_id: int) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        tag_delete(tag=_tag_or_404(project, tag_id), **request_actor(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class TagMergeApi(ProjectScopedApi):
    class Input(StrictInput):
        into = IdField(help_text="Id of the tag that stays.")

    @extend_schema(
        operation_id="tags_merge",
        summary="Merge this tag into another",
        request=Input,
        responses=inline_serializer(
            "TagMergeResult", {"moved": serializers.IntegerField(), "into": serializers.IntegerField()}
        ),
    )
    def post(self, request: Request, tag_id: int) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        source = _tag_or_404(project, tag_id)
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        target = _tag_or_404(project, data.validated_data["into"])
        moved = tag_merge(source=source, target=target, **request_actor(request))
        return Response({"moved": moved, "into": target.pk})
