"""REST API v1 for datasets, their entries, bulk actions on logs, and tags."""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Count, Q
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from curation.common.apis import (
    ID_MAX,
    ErrorResponse,
    FilterField,
    IdField,
    JSONObjectListField,
    ProjectScopedApi,
    StrictInput,
    dataset_or_not_found,
    is_whole_number,
    request_actor,
)
from curation.common.listing import DEPRECATED, PAGE_PARAMETERS, page_body, page_cursor, page_of, page_size
from curation.common.pagination import ascending_page, id_cursor
from curation.common.permissions import project_for_request
from curation.datasets.pairs import PairsResult, dataset_pairs_from_edits
from curation.datasets.selectors import ORIGINS
from curation.datasets.services import (
    dataset_create,
    dataset_delete,
    dataset_split,
    dataset_update,
    entries_delete,
    entry_set_split,
    entry_update,
)
from curation.logs.bulk.apis import BULK_RESPONSES, bulk_response
from curation.models import BulkAction, Dataset, DatasetEntry, Project, Role, Split


class DatasetOutput(serializers.ModelSerializer):
    entries = serializers.IntegerField(source="entry_count", read_only=True)
    synthetic = serializers.IntegerField(source="synthetic_count", read_only=True, help_text="Generated entries.")
    synthetic_validation = serializers.IntegerField(
        source="synthetic_validation_count", read_only=True, help_text="Generated entries in the validation split."
    )

    class Meta:
        model = Dataset
        fields = [
            "id", "name", "description", "kind", "entries", "synthetic", "synthetic_validation", "split_seed",
            "validation_ratio", "synthetic_in_validation", "created_at", "updated_at",
        ]  # fmt: skip
        extra_kwargs = {
            "synthetic_in_validation": {
                "help_text": "Whether a split may draw synthetic entries for validation (else they stay in train)."
            }
        }


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
    name = serializers.CharField(max_length=200, trim_whitespace=False)  # the service trims; the schema counts it all
    description = serializers.CharField(required=False, allow_blank=True, default="")


class DatasetPatchInput(StrictInput):
    name = serializers.CharField(max_length=200, required=False, trim_whitespace=False)
    description = serializers.CharField(required=False, allow_blank=True)
    synthetic_in_validation = serializers.BooleanField(
        required=False,
        help_text="Whether a split may draw synthetic entries for validation. Changing it moves no entry: split again "
        "to apply it.",
    )


class EntryOutput(serializers.ModelSerializer):
    source_deleted_by = serializers.SerializerMethodField(
        help_text="Who deleted the source log (a user's name or a key's prefix); null unless it was deleted."
    )

    class Meta:
        model = DatasetEntry
        fields = ["id", "log", "source_log_id", "source_deleted_at", "source_deleted_by", "split", "edited", "model",
                  "turns", "est_tokens", "messages", "tools", "synthetic", "provenance", "updated_at"]  # fmt: skip
        read_only_fields = ["synthetic", "provenance"]
        extra_kwargs = {
            "source_log_id": {"help_text": "The id of the source log once it is deleted (`log` is null)."},
            "synthetic": {"help_text": "Generated, not logged."},
            "provenance": {"help_text": "How a synthetic entry was generated (job, source, model...); {} otherwise."},
        }

    def get_source_deleted_by(self, entry: DatasetEntry) -> str | None:
        return entry.source_deleted_by_label if entry.source_deleted else None


class EntryPatchInput(StrictInput):
    messages = JSONObjectListField(required=False)
    tools = JSONObjectListField(required=False)
    split = serializers.ChoiceField(choices=Split.choices, required=False)


def _datasets(project: Project):
    return Dataset.objects.filter(project=project).annotate(
        entry_count=Count("entries"),
        synthetic_count=Count("entries", filter=Q(entries__synthetic=True)),
        synthetic_validation_count=Count(
            "entries", filter=Q(entries__synthetic=True, entries__split=Split.VALIDATION)
        ),
    )


class DatasetsApi(ProjectScopedApi):
    @extend_schema(operation_id="datasets_list", summary="Datasets, by name", parameters=PAGE_PARAMETERS,
                   responses=page_of("DatasetPage", DatasetOutput(many=True)))  # fmt: skip
    def get(self, request: Request) -> Response:
        project = project_for_request(request)
        page = ascending_page(_datasets(project), key="name", cursor=page_cursor(request), size=page_size(request))
        return Response(page_body(page, DatasetOutput))

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
        dataset_or_not_found(project, dataset_id)
        return Response(DatasetOutput(_datasets(project).get(pk=dataset_id)).data)

    @extend_schema(operation_id="datasets_update", summary="Rename or describe", request=DatasetPatchInput,
                   responses=DatasetOutput)  # fmt: skip
    def patch(self, request: Request, dataset_id: int) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        dataset = dataset_or_not_found(project, dataset_id)
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
        dataset = dataset_or_not_found(project, dataset_id)
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
        parameters=[
            *PAGE_PARAMETERS,
            OpenApiParameter(
                "split", str, enum=["", *Split.values], description="One split (empty or left out: all)."
            ),
            OpenApiParameter("q", str, description="Only entries whose text contains this (any case)."),
            OpenApiParameter(
                "origin",
                str,
                enum=["", *ORIGINS],
                description="Where entries come from: `logged` (a log), `imported` (a file) or `synthetic` "
                "(generated); empty or left out: all.",
            ),
            OpenApiParameter(
                "after",
                {"type": "integer", "minimum": 0, "maximum": ID_MAX},
                deprecated=True,
                description="Entries after this id: the cursor of old clients (answered with a `Deprecation` header).",
            ),
        ],
        responses=page_of(
            "EntryPage",
            EntryOutput(many=True),
            next_after=serializers.IntegerField(
                allow_null=True, help_text="Deprecated: the `after` of the next page; use `next_cursor`."
            ),
        ),
    )
    def get(self, request: Request, dataset_id: int) -> Response:
        project = project_for_request(request)
        dataset = dataset_or_not_found(project, dataset_id)
        entries = DatasetEntry.objects.filter(dataset=dataset).select_related(
            "source_deleted_by", "source_deleted_by_key"
        )
        params = request.query_params
        if params.get("split"):
            if params["split"] not in Split.values:
                raise exceptions.ValidationError({"split": [f"One of {', '.join(Split.values)}."]})
            entries = entries.filter(split=params["split"])
        if params.get("q"):
            entries = entries.filter(search_text__trgm_icontains=params["q"])
        if params.get("origin"):
            if params["origin"] not in ORIGINS:
                raise exceptions.ValidationError({"origin": [f"One of {', '.join(ORIGINS)}."]})
            entries = entries.filter(ORIGINS[params["origin"]])
        cursor, after = page_cursor(request), params.get("after")
        if after is not None and not cursor:
            if not is_whole_number(after):
                raise exceptions.ValidationError({"after": ["An entry id."]})
            cursor = id_cursor(int(after))
        page = ascending_page(entries, key="id", cursor=cursor, size=page_size(request))
        body = page_body(page, EntryOutput)
        body["next_after"] = page.items[-1].pk if page.next_cursor else None
        return Response(body, headers=DEPRECATED if after is not None else None)

    @extend_schema(
        operation_id="dataset_entries_add",
        summary="Add logs by ids or by filter",
        description="A log already in the dataset is not added twice. Large filters run as a bulk job (202).",
        request=EntriesAddInput,
        responses=BULK_RESPONSES,
    )
    def post(self, request: Request, dataset_id: int) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        dataset = dataset_or_not_found(project, dataset_id)
        data = EntriesAddInput(data=request.data)
        data.is_valid(raise_exception=True)
        return bulk_response(request, project, BulkAction.DATASET_ADD, {"dataset": dataset.pk}, data.validated_data)


class DatasetEntryApi(ProjectScopedApi):
    def _entry(self, request: Request, dataset_id: int, entry_id: int, role: str) -> DatasetEntry:
        project = project_for_request(request, role=role)
        dataset = dataset_or_not_found(project, dataset_id)
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
        dataset = dataset_or_not_found(project, dataset_id)
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        train, validation = dataset_split(dataset=dataset, **data.validated_data, **request_actor(request))
        return Response({"train": train, "validation": validation, **data.validated_data})


class PairsInput(StrictInput):
    """Where pairs go: an existing dataset of pairs (`target`), or a new one (`name`)."""

    target = IdField(required=False, help_text="A dataset of preference pairs of the project to add the pairs to.")
    name = serializers.CharField(
        max_length=200,
        required=False,
        allow_blank=True,
        default="",
        help_text="Without target: the new dataset's name.",
    )


PairsOutput = inline_serializer(
    "PairsResult",
    {
        "dataset": DatasetOutput(),
        "added": serializers.IntegerField(),
        "skipped": serializers.IntegerField(),
        "skipped_reasons": serializers.DictField(
            child=serializers.IntegerField(), help_text="Pairs skipped, by reason."
        ),
    },
)


def pairs_target_of(project: Project, data: dict) -> dict:
    """The service's `target` and `name` from a PairsInput: the target's 404 names it as any other dataset's."""
    target = data.get("target")
    return {"target": dataset_or_not_found(project, target) if target is not None else None, "name": data["name"]}


def pairs_response(result: PairsResult, status_code: int = status.HTTP_200_OK) -> Response:
    dataset = Dataset.objects.annotate(entry_count=Count("entries")).get(pk=result.dataset.pk)
    return Response({"dataset": DatasetOutput(dataset).data, **result.as_dict()}, status=status_code)


class DatasetPairsFromEditsApi(ProjectScopedApi):
    @extend_schema(
        operation_id="dataset_pairs_from_edits",
        summary="Make preference pairs from a dataset's edited entries",
        description=(
            "Each edited entry whose last answer differs from its source log's gives one pair: chosen is the edited "
            "answer, rejected the log's original answer (personal data replaced). The pairs go to a dataset of "
            "pairs (`target`) or a new one (`name`); a pair already there is not added again. Entries that give no "
            "pair are counted by reason."
        ),
        request=PairsInput,
        responses=PairsOutput,
    )
    def post(self, request: Request, dataset_id: int) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        source = dataset_or_not_found(project, dataset_id)
        data = PairsInput(data=request.data)
        data.is_valid(raise_exception=True)
        result = dataset_pairs_from_edits(
            source=source, **pairs_target_of(project, data.validated_data), **request_actor(request)
        )
        return pairs_response(result)
