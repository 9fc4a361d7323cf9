"""REST API v1 for near-duplicates on a dataset: computing its embeddings, the clusters, keep one per cluster."""

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from curation.common.apis import ProjectScopedApi, StrictInput, dataset_or_not_found, request_actor
from curation.common.permissions import project_for_request
from curation.datasets.dedup.services import (
    KEEP_DEFAULT,
    KEEP_RULES,
    THRESHOLD_DEFAULT,
    THRESHOLD_MAX,
    THRESHOLD_MIN,
    ClusterEntry,
    NearDuplicates,
    dataset_keep_one_per_cluster,
    dataset_near_duplicates,
    embedding_job_create,
    embedding_job_latest,
    kept_of,
)
from curation.models import EmbeddingJob, EmbeddingWork, Role


class EmbeddingJobOutput(serializers.ModelSerializer):
    progress = serializers.FloatField()

    class Meta:
        model: type[EmbeddingWork] = EmbeddingJob
        fields = ["id", "status", "progress", "total", "done", "embedded", "error", "created_at", "started_at",
                  "finished_at"]  # fmt: skip


class NearDuplicatesOutput(serializers.Serializer):
    threshold = serializers.FloatField()
    entries = serializers.IntegerField(help_text="Entries of the dataset.")
    embedded = serializers.IntegerField(help_text="Entries with a fresh embedding: the ones clustered.")
    missing = serializers.IntegerField(help_text="Entries not embedded yet, or edited since: in no cluster.")
    duplicates = serializers.IntegerField(help_text="Entries that keeping one per cluster would delete.")
    clusters = inline_serializer(
        "NearDuplicateCluster",
        {
            "size": serializers.IntegerField(),
            "entries": inline_serializer(
                "NearDuplicateEntry",
                {
                    "id": serializers.IntegerField(),
                    "first_user_turn": serializers.CharField(allow_blank=True),
                    "last_user_turn": serializers.CharField(
                        allow_blank=True, help_text="The question answered, when it is not the first; else empty."
                    ),
                    "answer": serializers.CharField(allow_blank=True, help_text="The last answer, cut."),
                    "edited": serializers.BooleanField(),
                    "kept": serializers.BooleanField(help_text="The one `keep` keeps of its cluster."),
                },
                many=True,
            ),
        },
        many=True,
        help_text="Largest first; the entries of each oldest first.",
    )


def _near_duplicates(found: NearDuplicates, keep: str) -> dict:
    return {
        "threshold": found.threshold,
        "entries": found.entries,
        "embedded": found.embedded,
        "missing": found.missing,
        "duplicates": found.duplicates,
        "clusters": [_cluster(cluster, keep) for cluster in found.clusters],
    }


def _cluster(cluster: list[ClusterEntry], keep: str) -> dict:
    kept = kept_of(cluster, keep).id
    fields = ("id", "first_user_turn", "last_user_turn", "answer", "edited")
    entries = [{**{name: getattr(entry, name) for name in fields}, "kept": entry.id == kept} for entry in cluster]
    return {"size": len(cluster), "entries": entries}


_THRESHOLD_HELP = f"Cosine similarity, {THRESHOLD_MIN} to {THRESHOLD_MAX}; {THRESHOLD_DEFAULT} by default."


class ThresholdInput(StrictInput):
    threshold = serializers.FloatField(min_value=THRESHOLD_MIN, max_value=THRESHOLD_MAX, default=THRESHOLD_DEFAULT)
    keep = serializers.ChoiceField(
        choices=list(KEEP_RULES),
        default=KEEP_DEFAULT,
        help_text="Which entry of each cluster is kept: the oldest, the one with the longest answer, or an edited one "
        "(the oldest of those; ties and clusters without one go to the oldest).",
    )


class DatasetEmbeddingsApi(ProjectScopedApi):
    @extend_schema(
        operation_id="dataset_embeddings_retrieve",
        summary="The dataset's latest embedding job and its progress (null before the first)",
        responses=inline_serializer("DatasetEmbeddings", {"job": EmbeddingJobOutput(allow_null=True)}),
    )
    def get(self, request: Request, dataset_id: int) -> Response:
        project = project_for_request(request)
        job = embedding_job_latest(dataset=dataset_or_not_found(project, dataset_id))
        return Response({"job": EmbeddingJobOutput(job).data if job else None})

    @extend_schema(
        operation_id="dataset_embeddings_create",
        summary="Compute the embeddings of the entries that have none or a stale one, as a job",
        request=None,
        responses={202: EmbeddingJobOutput},
    )
    def post(self, request: Request, dataset_id: int) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        dataset = dataset_or_not_found(project, dataset_id)
        job = embedding_job_create(dataset=dataset, **request_actor(request))
        return Response(EmbeddingJobOutput(job).data, status=status.HTTP_202_ACCEPTED)


class DatasetNearDuplicatesApi(ProjectScopedApi):
    @extend_schema(
        operation_id="dataset_near_duplicates",
        summary="Clusters of entries whose embeddings are at least `threshold` alike",
        parameters=[
            OpenApiParameter(
                "threshold",
                {"type": "number", "minimum": THRESHOLD_MIN, "maximum": THRESHOLD_MAX},
                description=_THRESHOLD_HELP,
            ),
            OpenApiParameter(
                "keep",
                {"type": "string", "enum": list(KEEP_RULES)},
                description="Which entry of each cluster is marked `kept`: the oldest (default), `longest` answer, "
                "or an `edited` one.",
            ),
        ],
        responses=NearDuplicatesOutput,
    )
    def get(self, request: Request, dataset_id: int) -> Response:
        project = project_for_request(request)
        dataset = dataset_or_not_found(project, dataset_id)
        data = ThresholdInput(data=request.query_params)
        data.is_valid(raise_exception=True)
        found = dataset_near_duplicates(dataset=dataset, threshold=data.validated_data["threshold"])
        return Response(_near_duplicates(found, data.validated_data["keep"]))


class DatasetKeepOneApi(ProjectScopedApi):
    class Input(ThresholdInput):
        dry_run = serializers.BooleanField(default=True)

    class Output(NearDuplicatesOutput):
        dry_run = serializers.BooleanField()
        deleted = serializers.ListField(
            child=serializers.IntegerField(), help_text="Ids of the entries deleted (dry run: that would be)."
        )

    @extend_schema(
        operation_id="dataset_near_duplicates_keep_one",
        summary="Delete all but one entry of each near-duplicate cluster, by default the oldest (dry run by default)",
        request=Input,
        responses=Output,
    )
    def post(self, request: Request, dataset_id: int) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        dataset = dataset_or_not_found(project, dataset_id)
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        keep = data.validated_data["keep"]
        found, deleted = dataset_keep_one_per_cluster(
            dataset=dataset, threshold=data.validated_data["threshold"], dry_run=data.validated_data["dry_run"],
            keep=keep, **request_actor(request),
        )  # fmt: skip
        body = {**_near_duplicates(found, keep), "dry_run": data.validated_data["dry_run"], "deleted": deleted}
        return Response(body)
