"""REST API v1 for "more like this": indexing a project's logs, and the logs nearest one."""

from django.conf import settings
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from curation.common.apis import (
    PROJECT_PARAMETER,
    ProjectScopedApi,
    filter_parameters,
    is_whole_number,
    request_actor,
    whole_number_parameter,
)
from curation.common.permissions import project_for_request
from curation.datasets.dedup.apis import EmbeddingJobOutput
from curation.logs.apis import LogListOutput
from curation.logs.filters import FILTER_PARAMS, logs_filter
from curation.logs.selectors import log_get
from curation.logs.similar.selectors import log_embedding_job_latest, log_index_size
from curation.logs.similar.services import RESULTS_DEFAULT, RESULTS_MAX, log_embedding_job_create, logs_similar
from curation.models import LogEmbeddingJob, Role


class LogEmbeddingJobOutput(EmbeddingJobOutput):
    class Meta(EmbeddingJobOutput.Meta):
        model = LogEmbeddingJob
        fields = [*EmbeddingJobOutput.Meta.fields, "limit"]


class LogEmbeddingsApi(ProjectScopedApi):
    @extend_schema(
        operation_id="log_embeddings_retrieve",
        summary='The index of "more like this": logs indexed, and the latest indexing job (null before the first)',
        parameters=[PROJECT_PARAMETER],
        responses=inline_serializer(
            "LogEmbeddings",
            {
                "indexed": serializers.IntegerField(help_text="Logs with an embedding: the ones searched."),
                "logs": serializers.IntegerField(help_text="Logs of the project."),
                "limit": serializers.IntegerField(help_text="The newest logs an indexing job looks at."),
                "job": LogEmbeddingJobOutput(allow_null=True),
            },
        ),
    )
    def get(self, request: Request) -> Response:
        project = project_for_request(request)
        job = log_embedding_job_latest(project=project)
        return Response({
            "indexed": log_index_size(project=project),
            "logs": project.logs.count(),
            "limit": settings.LOGTUNE_SIMILAR_LOGS_MAX,
            "job": LogEmbeddingJobOutput(job).data if job else None,
        })  # fmt: skip

    @extend_schema(
        operation_id="log_embeddings_create",
        summary="Embed the project's newest logs that have no embedding or a stale one, as a job",
        parameters=[PROJECT_PARAMETER],
        request=None,
        responses={202: LogEmbeddingJobOutput},
    )
    def post(self, request: Request) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        job = log_embedding_job_create(project=project, **request_actor(request))
        return Response(LogEmbeddingJobOutput(job).data, status=status.HTTP_202_ACCEPTED)


class LogSimilarApi(ProjectScopedApi):
    @extend_schema(
        operation_id="logs_similar",
        summary="The indexed logs most like this one, best first",
        description=(
            "Compares sentence embeddings of the conversations (user turns and last answer). Only indexed logs are "
            "searched (`POST /api/v1/log-embeddings`); the log asked about is embedded now if it is not. The "
            "explorer's filter parameters narrow the search."
        ),
        parameters=[
            PROJECT_PARAMETER,
            whole_number_parameter(
                "k", 1, RESULTS_MAX, f"Logs returned, 1–{RESULTS_MAX} (default {RESULTS_DEFAULT})."
            ),
            *filter_parameters(),
        ],
        responses=inline_serializer(
            "SimilarLogs",
            {
                "searched": serializers.IntegerField(help_text="Indexed logs in scope compared with this one."),
                "results": inline_serializer(
                    "SimilarLog",
                    {"similarity": serializers.FloatField(help_text="Cosine, -1 to 1."), "log": LogListOutput()},
                    many=True,
                ),
            },
        ),
    )
    def get(self, request: Request, log_id: int) -> Response:
        project = project_for_request(request)
        log = log_get(project=project, log_id=log_id)
        if log is None:
            raise exceptions.NotFound(f"Log {log_id} not found in project '{project.slug}'.")
        raw = request.query_params.get("k", str(RESULTS_DEFAULT))
        if not is_whole_number(raw) or not 1 <= int(raw) <= RESULTS_MAX:
            raise exceptions.ValidationError({"k": [f"A whole number from 1 to {RESULTS_MAX}."]})
        params = {key: value for key, value in request.query_params.items() if key in FILTER_PARAMS}
        within = logs_filter(project=project, params=request.query_params) if params else None
        found = logs_similar(project=project, log=log, k=int(raw), within=within)
        results = [{"similarity": score, "log": LogListOutput(entry).data} for entry, score in found.results]
        return Response({"searched": found.searched, "results": results})
