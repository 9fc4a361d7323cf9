"""REST API of the playground: merging a fine-tune's adapter, and answers of the base and the fine-tuned model."""

from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from curation.common.apis import JSONObjectListField, ProjectScopedApi, StrictInput, request_actor
from curation.common.permissions import project_for_request
from curation.models import Role
from training import selectors
from training.finetunes.apis import PROJECT, STATE_RESPONSE, job_or_404, state_call
from training.finetunes.serializers import FineTuneOutput
from training.models import Generation
from training.playground.services import MAX_NEW_TOKENS, finetune_merge_request, generation_create


class GenerationOutput(serializers.ModelSerializer):
    class Meta:
        model = Generation
        fields = ["id", "job", "status", "messages", "max_new_tokens", "base_output", "tuned_output", "error",
                  "created_at", "started_at", "finished_at"]  # fmt: skip


class GenerateInput(StrictInput):
    messages = JSONObjectListField(required=False, help_text="Chat messages ending with a user turn.")
    # Not trimmed, and declared as holding some text: a prompt of blanks is refused by the schema itself.
    prompt = serializers.CharField(
        required=False, trim_whitespace=False, validators=[RegexValidator(r"\S", "A prompt with some text.")],
        help_text="Shorthand for one user message.",
    )  # fmt: skip
    max_new_tokens = serializers.IntegerField(default=64, min_value=1, max_value=MAX_NEW_TOKENS)

    def validate(self, data: dict) -> dict:
        if ("messages" in data) == ("prompt" in data):
            raise serializers.ValidationError({"messages": ["Give exactly one of 'messages' or 'prompt'."]})
        if "prompt" in data:
            data["messages"] = [{"role": "user", "content": data.pop("prompt")}]
        return data


class FineTuneMergeApi(ProjectScopedApi):
    @extend_schema(
        operation_id="finetunes_merge", summary="Merge the adapter into full weights, on a GPU worker",
        description="Queues the merge (202); `merge_status` follows it, then `/merged` downloads the result.",
        parameters=[PROJECT], request=None, responses={202: FineTuneOutput, 409: STATE_RESPONSE},
    )  # fmt: skip
    def post(self, request: Request, job_id: int) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        job = state_call(finetune_merge_request, job=job_or_404(project, job_id), **request_actor(request))
        return Response(FineTuneOutput(job).data, status=status.HTTP_202_ACCEPTED)


class FineTuneGenerateApi(ProjectScopedApi):
    @extend_schema(
        operation_id="finetunes_generate",
        summary="Playground: answer a prompt with the base and the fine-tuned model",
        description="Queued for a GPU worker (202): poll `GET /api/v1/finetunes/{id}/generations/{generation_id}`.",
        parameters=[PROJECT], request=GenerateInput, responses={202: GenerationOutput, 409: STATE_RESPONSE},
    )  # fmt: skip
    def post(self, request: Request, job_id: int) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        job = job_or_404(project, job_id)
        data = GenerateInput(data=request.data)
        data.is_valid(raise_exception=True)
        who = request_actor(request)
        generation = state_call(generation_create, job=job, messages=data.validated_data["messages"],
                                 max_new_tokens=data.validated_data["max_new_tokens"], created_by=who["actor"],
                                 api_key=who["api_key"])  # fmt: skip
        return Response(GenerationOutput(generation).data, status=status.HTTP_202_ACCEPTED)


class GenerationDetailApi(ProjectScopedApi):
    @extend_schema(operation_id="finetunes_generation", summary="A playground answer",
                   parameters=[PROJECT], responses=GenerationOutput)  # fmt: skip
    def get(self, request: Request, job_id: int, generation_id: int) -> Response:
        project = project_for_request(request)
        generation = selectors.generation_get(job=job_or_404(project, job_id), generation_id=generation_id)
        if generation is None:
            raise exceptions.NotFound(f"Generation {generation_id} not found.")
        return Response(GenerationOutput(generation).data)
