"""REST API v1 for topics: the current topics of a project with their figures, one topic, and computing them."""

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from curation.common.apis import PROJECT_PARAMETER, ProjectScopedApi, StrictInput, request_actor
from curation.common.permissions import project_for_request
from curation.logs.similar.selectors import log_index_size
from curation.logs.topics import selectors
from curation.logs.topics.services import K_HIGH, K_LOW, topic_job_create
from curation.models import Role, Topic, TopicJob


class TopicJobOutput(serializers.ModelSerializer):
    progress = serializers.FloatField(help_text="Share done, 0 to 1.")

    class Meta:
        model = TopicJob
        fields = ["id", "status", "progress", "phase", "requested_k", "k", "logs", "error", "created_at", "started_at",
                  "finished_at"]  # fmt: skip


class TopicOutput(serializers.ModelSerializer):
    error_rate = serializers.FloatField(allow_null=True, help_text="Errors over logs.")
    share = serializers.SerializerMethodField(help_text="The topic's logs over the logs clustered, 0 to 1.")
    explorer_filter = serializers.SerializerMethodField(help_text="The explorer's filter for its logs: `topic=ID`.")

    class Meta:
        model = Topic
        fields = [
            "id", "number", "label", "terms", "size", "share", "tokens", "cost_usd", "latency_p50", "latency_p95",
            "errors", "error_rate", "trend", "trend_end", "trend_change", "explorer_filter",
        ]  # fmt: skip
        extra_kwargs = {
            "size": {"help_text": "Logs in the topic."},
            "trend": {"help_text": "Logs per day, the 14 days ending on `trend_end` (the newest indexed log's day)."},
            "trend_change": {
                "help_text": "The last 7 days' logs over the 7 before, minus 1 (0.5: +50%); null when the 7 before "
                "had none."
            },
        }

    def get_share(self, topic: Topic) -> float:
        return topic.size / topic.job.logs if topic.job.logs else 0.0

    def get_explorer_filter(self, topic: Topic) -> str:
        return f"topic={topic.pk}"


class TopicsApi(ProjectScopedApi):
    @extend_schema(
        operation_id="topics_list",
        summary="The project's current topics (its latest computation that succeeded) with their figures",
        parameters=[
            PROJECT_PARAMETER,
            OpenApiParameter(
                "sort",
                {"type": "string", "enum": list(selectors.SORTS)},
                description="volume (default), cost, latency (p95) or errors: the largest first.",
            ),
        ],
        responses=inline_serializer(
            "Topics",
            {
                "indexed": serializers.IntegerField(help_text="Logs with an embedding: what a computation clusters."),
                "run": TopicJobOutput(allow_null=True, help_text="The computation the topics come from."),
                "job": TopicJobOutput(allow_null=True, help_text="The latest computation, whatever its state."),
                "topics": TopicOutput(many=True),
            },
        ),
    )
    def get(self, request: Request) -> Response:
        project = project_for_request(request)
        sort = request.query_params.get("sort") or selectors.SORT_DEFAULT
        if sort not in selectors.SORTS:
            raise exceptions.ValidationError({"sort": [f"One of {', '.join(selectors.SORTS)}."]})
        run = selectors.topic_run_current(project=project)
        job = selectors.topic_job_latest(project=project)
        topics = selectors.topics_of_run(run=run, sort=sort).select_related("job") if run else []
        return Response({
            "indexed": log_index_size(project=project),
            "run": TopicJobOutput(run).data if run else None,
            "job": TopicJobOutput(job).data if job else None,
            "topics": TopicOutput(topics, many=True).data,
        })  # fmt: skip


class TopicDetailApi(ProjectScopedApi):
    @extend_schema(
        operation_id="topics_retrieve",
        summary="One topic of the current computation (a topic of an older one is not found)",
        parameters=[PROJECT_PARAMETER],
        responses=TopicOutput,
    )
    def get(self, request: Request, topic_id: int) -> Response:
        project = project_for_request(request)
        topic = selectors.topic_get(project=project, topic_id=topic_id)
        if topic is None:
            raise exceptions.NotFound(f"Topic {topic_id} not found among the current topics of '{project.slug}'.")
        return Response(TopicOutput(topic).data)


class TopicJobsApi(ProjectScopedApi):
    class Input(StrictInput):
        k = serializers.IntegerField(
            required=False, allow_null=True, min_value=K_LOW, max_value=K_HIGH,
            help_text="Topics to find; none: about sqrt(logs / 2), from 5 to 60.",
        )  # fmt: skip

    @extend_schema(
        operation_id="topic_jobs_create",
        summary="Compute the project's topics from its indexed logs, as a job (one at a time per project)",
        description=(
            "A job already queued or running is returned instead. A project with no indexed log is answered 400 "
            "naming `index`: index its logs first (`POST /api/v1/log-embeddings`)."
        ),
        parameters=[PROJECT_PARAMETER],
        request=Input,
        responses={202: TopicJobOutput},
    )
    def post(self, request: Request) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        job = topic_job_create(project=project, k=data.validated_data.get("k"), **request_actor(request))
        return Response(TopicJobOutput(job).data, status=status.HTTP_202_ACCEPTED)


class TopicJobApi(ProjectScopedApi):
    @extend_schema(
        operation_id="topic_jobs_retrieve",
        summary="A computation of the topics: its state and progress",
        parameters=[PROJECT_PARAMETER],
        responses=TopicJobOutput,
    )
    def get(self, request: Request, job_id: int) -> Response:
        project = project_for_request(request)
        job = selectors.topic_job_get(project=project, job_id=job_id)
        if job is None:
            raise exceptions.NotFound(f"Topic job {job_id} not found in project '{project.slug}'.")
        return Response(TopicJobOutput(job).data)
