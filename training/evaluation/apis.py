"""REST API of evaluation runs: start one on a fine-tune (editors), follow it, read its verdict, cancel it; people's
votes on its examples and the judge's agreement with them."""

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from curation.common.apis import (
    PROJECT_PARAMETER,
    ErrorResponse,
    IdField,
    NotReadyResponse,
    ProjectScopedApi,
    StrictInput,
    request_actor,
)
from curation.common.listing import PAGE_PARAMETERS, page_body, page_cursor, page_of, page_size
from curation.common.pagination import ascending_page, keyset_page
from curation.common.permissions import project_for_request
from curation.datasets.apis import PairsInput, PairsOutput, pairs_response, pairs_target_of
from curation.models import Dataset, DatasetSnapshot, Project, Role
from training.evaluation.metrics import LOSS, TIE, WIN
from training.evaluation.pairs import evaluation_pairs_from_votes
from training.evaluation.promotion.selectors import evaluation_gate, promotion_rule_get
from training.evaluation.promotion.serializers import GateOutput
from training.evaluation.regression import regression_set_pin, regression_set_unpin
from training.evaluation.services import (
    MAX_EXAMPLES,
    MAX_NEW_TOKENS,
    MAX_SLICE_KEY,
    evaluation_cancel,
    evaluation_create,
    evaluation_estimate,
)
from training.evaluation.votes import vote_record, votes_summary
from training.finetunes.apis import STATE_RESPONSE, JobStateConflict, job_or_404, state_call
from training.models import Comparison, EvaluationRun, EvaluationVote, ModelEndpoint, RegressionSet

# The API is not blind: a vote names the answer it prefers.
OUTCOMES = {"tuned": WIN, "tie": TIE, "other": LOSS}
OUTCOME_NAMES = {value: name for name, value in OUTCOMES.items()}


class EstimateOutput(serializers.Serializer):
    value = serializers.FloatField()
    low = serializers.FloatField(help_text="The 95% bootstrap interval's low end.")
    high = serializers.FloatField()
    n = serializers.IntegerField(help_text="What the value rests on.")


class ComparisonVotesOutput(serializers.Serializer):
    votes = serializers.IntegerField(help_text="Votes on this comparison, every person's.")
    voters = serializers.IntegerField(help_text="People who voted.")
    examples = serializers.IntegerField(help_text="Examples voted on.")
    win_rate = EstimateOutput(allow_null=True, help_text="The people's win rate of the fine-tune: (wins + ½ ties) "
                              "÷ votes; null without a vote.")  # fmt: skip
    wins = serializers.IntegerField()
    ties = serializers.IntegerField()
    losses = serializers.IntegerField()
    agreement = EstimateOutput(
        allow_null=True, help_text="On the votes on examples the judge rated: how often the judge's verdict was the "
        "person's (each vote one pair); null when there is none.",
    )  # fmt: skip
    kappa = serializers.FloatField(allow_null=True, help_text="Cohen's kappa of the same pairs.")
    compared = serializers.IntegerField(help_text="The pairs (judge, person) agreement and kappa rest on.")


class VotesSummaryOutput(serializers.Serializer):
    base = ComparisonVotesOutput(help_text="The fine-tune's answers against the base model's.")
    teacher = ComparisonVotesOutput(help_text="The fine-tune's answers against the logged ones (the teacher).")


class EvaluationOutput(serializers.ModelSerializer):
    progress = serializers.FloatField()
    judge: serializers.PrimaryKeyRelatedField = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)

    class Meta:
        model = EvaluationRun
        fields = [
            "id", "job", "status", "stage", "progress", "judge", "judge_name", "rubric", "max_examples",
            "max_new_tokens", "retention_examples", "slice_key", "results", "error", "created_at", "started_at",
            "finished_at",
        ]  # fmt: skip


class EvaluationDetailOutput(EvaluationOutput):
    gate = serializers.SerializerMethodField(
        help_text="The promotion gate's verdict, stored when the run succeeded under the project's rule then, and "
        "`current`, the verdict under the rule now when it changed since; null for a run that did not succeed."
    )
    votes = serializers.SerializerMethodField(help_text="People's votes and the judge's agreement with them.")

    class Meta(EvaluationOutput.Meta):
        fields = [*EvaluationOutput.Meta.fields, "gate", "examples", "votes"]

    @extend_schema_field(GateOutput(allow_null=True))
    def get_gate(self, run: EvaluationRun) -> dict | None:
        return evaluation_gate(run=run, rule=promotion_rule_get(project=run.job.project).gate_rule)

    @extend_schema_field(VotesSummaryOutput)
    def get_votes(self, run: EvaluationRun) -> dict:
        return votes_summary(run=run)


class VoteInput(StrictInput):
    example = serializers.IntegerField(min_value=0, max_value=2**31 - 1,
                                       help_text="The example's index in the evaluation's `examples`.")  # fmt: skip
    comparison = serializers.ChoiceField(
        choices=Comparison.choices, help_text="The fine-tune's answer against the base model's, or the logged one."
    )
    outcome = serializers.ChoiceField(
        choices=list(OUTCOMES), help_text="The better answer: the fine-tune's (`tuned`), the `other` one, or a `tie`."
    )


class VoteOutput(serializers.ModelSerializer):
    outcome = serializers.SerializerMethodField()
    voter = serializers.CharField(source="voter.username", read_only=True)
    tuned_first = serializers.BooleanField(
        allow_null=True, help_text="On the blind page, whether the fine-tune's answer was shown as 1; null for a "
        "vote sent through the API, which shows no answers."
    )  # fmt: skip

    class Meta:
        model = EvaluationVote
        fields = ["id", "example", "comparison", "outcome", "voter", "tuned_first", "created_at"]

    @extend_schema_field(serializers.ChoiceField(choices=list(OUTCOMES)))
    def get_outcome(self, vote: EvaluationVote) -> str:
        return OUTCOME_NAMES[vote.outcome]


class EvaluationInput(StrictInput):
    judge = IdField(required=False, allow_null=True, help_text="A model endpoint of the project; none: metrics only.")
    rubric = serializers.CharField(required=False, allow_blank=True, max_length=10_000)
    max_examples = serializers.IntegerField(required=False, min_value=1, max_value=MAX_EXAMPLES, default=100)
    max_new_tokens = serializers.IntegerField(required=False, min_value=1, max_value=MAX_NEW_TOKENS, default=256)
    retention_examples = serializers.IntegerField(
        required=False, min_value=0, max_value=MAX_EXAMPLES, default=100,
        help_text="Logs of the project outside the training snapshot answered by both models, for the forgetting "
        "check (plus the general sets on disk); 0: none.",
    )  # fmt: skip
    slice_key = serializers.CharField(
        required=False, allow_blank=True, max_length=MAX_SLICE_KEY, default="",
        help_text="A metadata key every metric is also broken down by (tags always are).",
    )  # fmt: skip


def _judge_in(project: Project, wanted: int | None) -> ModelEndpoint | None:
    if wanted is None:
        return None
    judge = ModelEndpoint.objects.filter(project=project, pk=wanted).first()
    if judge is None:
        raise exceptions.ValidationError({"judge": [f"Endpoint {wanted} not found in this project."]})
    return judge


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
        description="The fine-tuned model's answers against the base model's and the logged ones, on the "
        "validation split of its snapshot, the project's regression sets and a retention set (forgetting): exact "
        "match, ROUGE-L, chrF, loss and perplexity (and JSON validity, schema and tool-call match, label metrics "
        "where they apply), per set and per slice, each with n and a 95% bootstrap interval; with a `judge` "
        "endpoint, pairwise win rates judged in both orders. A GPU worker answers, then a CPU worker scores; poll "
        "the evaluation. `POST …/evaluations/estimate` says first what it would answer and cost.",
        parameters=[PROJECT_PARAMETER], request=EvaluationInput,
        responses={202: EvaluationOutput, 409: STATE_RESPONSE},
    )  # fmt: skip
    def post(self, request: Request, job_id: int) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        job = job_or_404(project, job_id)
        data = EvaluationInput(data=request.data)
        data.is_valid(raise_exception=True)
        given = data.validated_data
        judge = _judge_in(project, given.get("judge"))
        run = state_call(
            evaluation_create, job=job, judge=judge, rubric=given.get("rubric", ""),
            max_examples=given["max_examples"], max_new_tokens=given["max_new_tokens"],
            retention_examples=given["retention_examples"], slice_key=given["slice_key"], **request_actor(request),
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


class EvaluationEstimateApi(ProjectScopedApi):
    @extend_schema(
        operation_id="finetune_evaluations_estimate", summary="What an evaluation would answer and cost",
        description="Examples of each kind of set (at most), the answers the GPU worker would write and, with a "
        "judge, its calls, tokens and cost in USD (the endpoint's prices, else the price table's; null: unknown).",
        parameters=[PROJECT_PARAMETER], request=EvaluationInput,
        responses=inline_serializer("EvaluationEstimate", {
            "examples": serializers.DictField(child=serializers.IntegerField()),
            "answers": serializers.IntegerField(), "answer_tokens_at_most": serializers.IntegerField(),
            "judge_calls": serializers.IntegerField(), "judge_input_tokens": serializers.IntegerField(),
            "judge_output_tokens": serializers.IntegerField(),
            "judge_cost_usd": serializers.CharField(allow_null=True),
        }),
    )  # fmt: skip
    def post(self, request: Request, job_id: int) -> Response:
        project = project_for_request(request)
        job = job_or_404(project, job_id)
        data = EvaluationInput(data=request.data)
        data.is_valid(raise_exception=True)
        given = data.validated_data
        return Response(evaluation_estimate(
            job=job, judge=_judge_in(project, given.get("judge")), max_examples=given["max_examples"],
            max_new_tokens=given["max_new_tokens"], retention_examples=given["retention_examples"],
        ))  # fmt: skip


class RegressionSetOutput(serializers.ModelSerializer):
    name = serializers.CharField()
    dataset: serializers.PrimaryKeyRelatedField = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)
    snapshot: serializers.PrimaryKeyRelatedField = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)

    class Meta:
        model = RegressionSet
        fields = ["id", "name", "dataset", "snapshot", "created_at"]


class RegressionSetInput(StrictInput):
    dataset = IdField(required=False, allow_null=True, help_text="A dataset, read from its newest snapshot.")
    snapshot = IdField(required=False, allow_null=True, help_text="One snapshot, which never changes.")


class RegressionSetsApi(ProjectScopedApi):
    @extend_schema(
        operation_id="regression_sets_list", summary="The project's regression sets",
        parameters=[PROJECT_PARAMETER, *PAGE_PARAMETERS],
        responses=page_of("RegressionSetPage", RegressionSetOutput(many=True)),
    )  # fmt: skip
    def get(self, request: Request) -> Response:
        project = project_for_request(request)
        sets = RegressionSet.objects.filter(project=project).select_related("dataset", "snapshot__dataset")
        page = ascending_page(sets, key="id", cursor=page_cursor(request), size=page_size(request))
        return Response(page_body(page, RegressionSetOutput))

    @extend_schema(
        operation_id="regression_sets_create", summary="Pin a dataset or a snapshot as a regression set (editors)",
        description="Every evaluation run of the project's fine-tunes then answers it too. A dataset is read "
        "from its newest snapshot at each run; a snapshot never changes.",
        parameters=[PROJECT_PARAMETER], request=RegressionSetInput, responses={201: RegressionSetOutput},
    )  # fmt: skip
    def post(self, request: Request) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        data = RegressionSetInput(data=request.data)
        data.is_valid(raise_exception=True)
        dataset_id, snapshot_id = data.validated_data.get("dataset"), data.validated_data.get("snapshot")
        dataset = Dataset.objects.filter(project=project, pk=dataset_id).first() if dataset_id is not None else None
        snapshots = DatasetSnapshot.objects.filter(project=project, pk=snapshot_id)
        snapshot = snapshots.first() if snapshot_id is not None else None
        if dataset_id is not None and dataset is None:
            raise exceptions.ValidationError({"dataset": [f"Dataset {dataset_id} not found in this project."]})
        if snapshot_id is not None and snapshot is None:
            raise exceptions.ValidationError({"snapshot": [f"Snapshot {snapshot_id} not found in this project."]})
        try:
            pinned = regression_set_pin(project=project, dataset=dataset, snapshot=snapshot, **request_actor(request))
        except DjangoValidationError as exc:
            raise exceptions.ValidationError(exc.message_dict) from None
        return Response(RegressionSetOutput(pinned).data, status=status.HTTP_201_CREATED)


class RegressionSetDetailApi(ProjectScopedApi):
    @extend_schema(
        operation_id="regression_sets_destroy", summary="Unpin a regression set (editors)",
        parameters=[PROJECT_PARAMETER], request=None, responses={204: None},
    )  # fmt: skip
    def delete(self, request: Request, set_id: int) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        pinned = RegressionSet.objects.filter(project=project, pk=set_id).first()
        if pinned is None:
            raise exceptions.NotFound(f"Regression set {set_id} not found.")
        regression_set_unpin(pinned=pinned, **request_actor(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class EvaluationVotesApi(ProjectScopedApi):
    @extend_schema(
        operation_id="finetune_evaluation_votes_list", summary="People's votes on an evaluation, newest first",
        parameters=[PROJECT_PARAMETER, *PAGE_PARAMETERS],
        responses=page_of("EvaluationVotePage", VoteOutput(many=True)),
    )  # fmt: skip
    def get(self, request: Request, job_id: int, evaluation_id: int) -> Response:
        run = _run_or_404(project_for_request(request), job_id, evaluation_id)
        page = keyset_page(run.votes.select_related("voter"), cursor=page_cursor(request), size=page_size(request))
        return Response(page_body(page, VoteOutput))

    @extend_schema(
        operation_id="finetune_evaluation_votes_create", summary="Vote on an example of an evaluation (editors)",
        description="The signed-in person's verdict on one example of a finished evaluation: the fine-tune's answer "
        "against the base model's or the logged one. A second vote on the same example and comparison replaces the "
        "first (200). Not blind: the caller names the answer it prefers; the blind page is "
        "`/p/{project}/finetunes/{id}/evaluations/{eid}/vote`. A vote is one person's: an API key, which is no "
        "person, is refused (403); use a session.",
        parameters=[PROJECT_PARAMETER], request=VoteInput,
        responses={
            201: VoteOutput, 200: VoteOutput,
            409: OpenApiResponse(NotReadyResponse, description="The evaluation has not finished (see `status`)."),
            403: OpenApiResponse(ErrorResponse, description="The caller's role is too low, or the caller is an API "
                                 "key: votes are people's."),
        },
    )  # fmt: skip
    def post(self, request: Request, job_id: int, evaluation_id: int) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        actor = request_actor(request)
        if actor["actor"] is None:
            raise exceptions.PermissionDenied("A vote is one person's: an API key cannot vote; sign in and vote with "
                                              "your session.")  # fmt: skip
        run = _run_or_404(project, job_id, evaluation_id)
        data = VoteInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            vote, created = vote_record(
                run=run, voter=actor["actor"], example=data.validated_data["example"],
                comparison=data.validated_data["comparison"], outcome=OUTCOMES[data.validated_data["outcome"]],
                tuned_first=None,
            )  # fmt: skip
        except DjangoValidationError as exc:
            if set(exc.message_dict) == {"status"}:
                raise JobStateConflict({"detail": exc.message_dict["status"][0], "status": run.status}) from None
            raise exceptions.ValidationError(exc.message_dict) from None
        return Response(VoteOutput(vote).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class EvaluationPairsApi(ProjectScopedApi):
    @extend_schema(
        operation_id="finetune_evaluation_pairs", summary="Make preference pairs from people's votes (editors)",
        description="Each example and comparison people preferred one answer on gives one pair: a win makes the "
        "fine-tune's answer chosen and the other rejected, a loss the reverse; ties give nothing, and when voters "
        "disagree the majority decides (an even split gives nothing). The pairs go to a dataset of pairs (`target`) "
        "or a new one (`name`); a pair already there is not added again.",
        parameters=[PROJECT_PARAMETER], request=PairsInput, responses=PairsOutput,
    )  # fmt: skip
    def post(self, request: Request, job_id: int, evaluation_id: int) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        run = _run_or_404(project, job_id, evaluation_id)
        data = PairsInput(data=request.data)
        data.is_valid(raise_exception=True)
        result = evaluation_pairs_from_votes(
            run=run, **pairs_target_of(project, data.validated_data), **request_actor(request)
        )
        return pairs_response(result)
