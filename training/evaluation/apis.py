"""REST API of evaluation runs: start one on a fine-tune (editors), follow it, read its verdict, cancel it."""

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from curation.common.apis import PROJECT_PARAMETER, IdField, ProjectScopedApi, StrictInput, request_actor
from curation.common.listing import PAGE_PARAMETERS, page_body, page_cursor, page_of, page_size
from curation.common.pagination import keyset_page
from curation.common.permissions import project_for_request
from curation.models import Project, Role
from training.evaluation.promotion.selectors import evaluation_gate, promotion_rule_get
from training.evaluation.promotion.serializers import GateOutput
from training.evaluation.services import MAX_EXAMPLES, MAX_NEW_TOKENS, evaluation_cancel, evaluation_create
from training.finetunes.apis import STATE_RESPONSE, job_or_404, state_call
from training.models import EvaluationRun, ModelEndpoint


class EvaluationOutput(serializers.ModelSerializer):
    progress = serializers.FloatField()
    judge: serializers.PrimaryKeyRelatedField = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)

    class Meta:
        model = EvaluationRun
        fields = [
            "id", "job", "status", "stage", "progress", "judge", "judge_name", "rubric", "max_examples",
            "max_new_tokens", "results", "error", "created_at", "started_at", "finished_at",
        ]  # fmt: skip


class EvaluationDetailOutput(EvaluationOutput):
    gate = serializers.SerializerMethodField(
        help_text="The promotion gate's verdict, stored when the run succeeded under the project's rule then, and "
        "`current`, the verdict under the rule now when it changed since; null for a run that did not succeed."
    )

    class Meta(EvaluationOutput.Meta):
        fields = [*EvaluationOutput.Meta.fields, "gate", "examples"]

    @extend_schema_field(GateOutput(allow_null=True))
    def get_gate(self, run: EvaluationRun) -> dict | None:
        return evaluation_gate(run=run, rule=promotion_rule_get(project=run.job.project).gate_rule)


class EvaluationInput(StrictInput):
    judge = IdField(required=False, allow_null=True, help_text="A model endpoint of the project; none: metrics only.")
    rubric = serializers.CharField(required=False, allow_blank=True, max_length=10_000)
    max_examples = serializers.IntegerField(required=False, min_value=1, max_value=MAX_EXAMPLES, default=100)
    max_new_tokens = serializers.IntegerField(required=False, min_value=1, max_value=MAX_NEW_TOKENS, default=256)


def _run_or_404(project: Project, job_id: int, evaluation_id: int) -> EvaluationRun:
    run = EvaluationRun.objects.filter(pk=evaluation_id, job_id=job_id, job__project=project).first()
    if run is None:
        raise exceptions.NotFound(f"Evaluation {evaluation_id} not found on fine-tune {job_id}.")
    return run


class EvaluationsApi(ProjectScopedApi):
    @extend_schema(
        operation_id="finetune_evaluations_list", summary="A fine-tune's evaluations, newest first",
        parameters=[PROJECT_PARAMETER, *PAGE_PARAMETERS],
        responses=page_of("EvaluationPage", EvaluationOutput(many=True)),
    )  # fmt: skip
    def get(self, request: Request, job_id: int) -> Response:
        job = job_or_404(project_for_request(request), job_id)
        page = keyset_page(job.evaluations.all(), cursor=page_cursor(request), size=page_size(request))
        return Response(page_body(page, EvaluationOutput))

    @extend_schema(
        operation_id="finetune_evaluations_create", summary="Evaluate a fine-tune (editors)",
        description="The fine-tuned model's answers to the validation split of its snapshot against the base "
        "model's and the logged ones: exact match, ROUGE-L, chrF (and JSON validity, label metrics where they "
        "apply), each with n and a 95% bootstrap interval; with a `judge` endpoint, pairwise win rates judged in "
        "both orders. A GPU worker answers, then a CPU worker scores; poll the evaluation.",
        parameters=[PROJECT_PARAMETER], request=EvaluationInput,
        responses={202: EvaluationOutput, 409: STATE_RESPONSE},
    )  # fmt: skip
    def post(self, request: Request, job_id: int) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        job = job_or_404(project, job_id)
        data = EvaluationInput(data=request.data)
        data.is_valid(raise_exception=True)
        judge = None
        if data.validated_data.get("judge") is not None:
            judge = ModelEndpoint.objects.filter(project=project, pk=data.validated_data["judge"]).first()
            if judge is None:
                wanted = data.validated_data["judge"]
                raise exceptions.ValidationError({"judge": [f"Endpoint {wanted} not found in this project."]})
        run = state_call(
            evaluation_create, job=job, judge=judge, rubric=data.validated_data.get("rubric", ""),
            max_examples=data.validated_data["max_examples"], max_new_tokens=data.validated_data["max_new_tokens"],
            **request_actor(request),
        )  # fmt: skip
        return Response(EvaluationOutput(run).data, status=status.HTTP_202_ACCEPTED)


class EvaluationDetailApi(ProjectScopedApi):
    @extend_schema(
        operation_id="finetune_evaluations_retrieve", summary="An evaluation: progress, verdict, answers",
        parameters=[PROJECT_PARAMETER], responses=EvaluationDetailOutput,
    )  # fmt: skip
    def get(self, request: Request, job_id: int, evaluation_id: int) -> Response:
        run = _run_or_404(project_for_request(request), job_id, evaluation_id)
        return Response(EvaluationDetailOutput(run).data)


class EvaluationCancelApi(ProjectScopedApi):
    @extend_schema(
        operation_id="finetune_evaluations_cancel", summary="Cancel an evaluation (editors)",
        parameters=[PROJECT_PARAMETER], request=None, responses=EvaluationOutput,
    )  # fmt: skip
    def post(self, request: Request, job_id: int, evaluation_id: int) -> Response:
        run = _run_or_404(project_for_request(request, role=Role.EDITOR), job_id, evaluation_id)
        evaluation_cancel(run=run, **request_actor(request))
        run.refresh_from_db()
        return Response(EvaluationOutput(run).data)
