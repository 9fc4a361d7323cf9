"""REST API of a log's scores: `GET/POST /api/v1/logs/{id}/scores`, `DELETE /api/v1/logs/{id}/scores/{score_id}`."""

from typing import Any

from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_field
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from curation.common.apis import ProjectScopedApi, StrictInput, request_actor
from curation.common.permissions import project_for_request
from curation.logs.ingest.canonical import IngestError
from curation.logs.ingest.scores import (
    COMMENT_MAX,
    NAME_PATTERN,
    SCORES_MAX,
    TEXT_VALUE_MAX,
    ScoreIn,
    score_read,
)
from curation.logs.scores.selectors import log_score_get, log_scores
from curation.logs.scores.services import log_score_delete, log_scores_add
from curation.logs.selectors import log_get
from curation.models import LogEntry, LogScore, Project, Role, ScoreSource, actor_label


@extend_schema_field({"oneOf": [{"type": "number"}, {"type": "string", "minLength": 1, "maxLength": TEXT_VALUE_MAX}]})
class ScoreValueField(serializers.Field):
    """A score's value: a number (a rating, a judge's score) or a category (`up`, `good`)."""

    def to_internal_value(self, data: Any) -> Any:
        return data  # checked with the score (score_read), which names the field

    def to_representation(self, value: Any) -> Any:
        return value


class ScoreOutput(serializers.ModelSerializer):
    value = ScoreValueField(help_text="A number or a category.")
    created_by = serializers.SerializerMethodField(help_text="Who gave it: a user, an API key, or none (at ingest).")

    class Meta:
        model = LogScore
        fields = ["id", "name", "value", "source", "comment", "created_by", "created_at"]

    def get_created_by(self, score: LogScore) -> str | None:
        if score.created_by_id is None and score.api_key_id is None:
            return None
        return actor_label(score.created_by, score.api_key)


class ScoreInput(StrictInput):
    name = serializers.RegexField(
        f"^{NAME_PATTERN}$", max_length=50, required=False,
        help_text="Short and slug-like: `thumbs`, `quality`, `helpfulness`.",
    )  # fmt: skip
    value = ScoreValueField(required=False, help_text="A finite number, or a category (1 to 100 characters).")
    # A declared field, taken out of the class by DRF's metaclass: Field.source (the attribute read) is untouched.
    source = serializers.ChoiceField(  # type: ignore[assignment]
        choices=ScoreSource.choices, required=False, help_text="Default: `api` for an API key, `user` for a session."
    )
    comment = serializers.CharField(max_length=COMMENT_MAX, required=False, allow_blank=True, trim_whitespace=False)


def _log_or_404(project: Project, log_id: int) -> LogEntry:
    log = log_get(project=project, log_id=log_id)
    if log is None:
        raise exceptions.NotFound(f"Log {log_id} not found in project '{project.slug}'.")
    return log


class ScoreList(serializers.Serializer):
    scores = ScoreOutput(many=True)


class LogScoresApi(ProjectScopedApi):
    class Input(ScoreInput):
        scores = serializers.ListField(
            child=ScoreInput(), required=False, min_length=1, max_length=SCORES_MAX,
            help_text=f"Several scores at once (at most {SCORES_MAX}), instead of one by name and value.",
        )  # fmt: skip

    @extend_schema(operation_id="logs_scores_list", summary="A log's scores", responses=ScoreList)
    def get(self, request: Request, log_id: int) -> Response:
        log = _log_or_404(project_for_request(request), log_id)
        return Response(ScoreList({"scores": log_scores(log=log)}).data)

    @extend_schema(
        operation_id="logs_scores_create",
        summary="Score a log",
        description=(
            'One score, `{name, value, source?, comment?}`, or several, `{"scores": [...]}` (not both). `value` '
            "is a number or a category; `source` is `user`, `api` or `judge` (default: `api` for an API key, `user` "
            "for a session). A log may hold several scores of one name. Audited as `logs.score_add`."
        ),
        request=Input,
        responses={201: ScoreList},
        examples=[
            OpenApiExample("Thumbs up", request_only=True, value={"name": "thumbs", "value": "up"}),
            OpenApiExample(
                "A judge's scores",
                request_only=True,
                value={"scores": [{"name": "quality", "value": 4, "source": "judge", "comment": "correct, terse"}]},
            ),
        ],
    )
    def post(self, request: Request, log_id: int) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        log = _log_or_404(project, log_id)
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        scores = _scores_read(request.data if isinstance(request.data, dict) else {})
        added = log_scores_add(log=log, scores=scores, **request_actor(request))
        return Response(ScoreList({"scores": added}).data, status=status.HTTP_201_CREATED)


def _scores_read(body: dict) -> list[ScoreIn]:
    """The body's scores, checked with the readers' rules; a 400 names the field (`value`, `scores`: by index)."""
    single = {key: body[key] for key in ("name", "value", "source", "comment") if key in body}
    if "scores" in body and single:
        raise exceptions.ValidationError({"scores": ["Either scores, or one score's name and value: not both."]})
    if "scores" not in body:
        return [_score_or_400(single, None)]
    return [_score_or_400(item, index) for index, item in enumerate(body["scores"])]


def _score_or_400(item: object, index: int | None) -> ScoreIn:
    try:
        return score_read(item, "", with_source=True)
    except IngestError as exc:
        field, _, reason = str(exc).partition(": ")
        error = {field: [reason[:1].upper() + reason[1:] + "."]}
        raise exceptions.ValidationError(error if index is None else {"scores": {str(index): error}}) from None


class LogScoreDetailApi(ProjectScopedApi):
    @extend_schema(
        operation_id="logs_scores_destroy",
        summary="Delete a score",
        description="Deletes one score of the log. Audited as `logs.score_delete`.",
        responses={204: None},
    )
    def delete(self, request: Request, log_id: int, score_id: int) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        log = _log_or_404(project, log_id)
        score = log_score_get(log=log, score_id=score_id)
        if score is None:
            raise exceptions.NotFound(f"Score {score_id} not found on log {log_id}.")
        log_score_delete(score=score, **request_actor(request))
        return Response(status=status.HTTP_204_NO_CONTENT)
