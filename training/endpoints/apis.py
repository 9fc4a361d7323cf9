"""REST API of model endpoints: members see them (never their keys), owners add, change and remove them, editors
check that one answers."""

from collections.abc import Callable
from decimal import Decimal

from django.core.exceptions import ValidationError
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from curation.common.apis import ProjectScopedApi, StrictInput, request_actor
from curation.common.listing import PAGE_PARAMETERS, page_body, page_cursor, page_of, page_size
from curation.common.pagination import ascending_page
from curation.common.permissions import project_for_request
from curation.models import Project, Role
from training.endpoints.secrets import SecretUnreadable
from training.endpoints.services import (
    MAX_CONCURRENCY,
    MAX_TIMEOUT_S,
    EndpointFields,
    EndpointRefused,
    endpoint_check,
    endpoint_create,
    endpoint_delete,
    endpoint_update,
)
from training.models import ModelEndpoint


def _price(help_text: str) -> serializers.FloatField:
    # A JSON number; kept to six decimals (the column's), so any number the schema allows is taken.
    return serializers.FloatField(min_value=0, max_value=999_999, allow_null=True, required=False, help_text=help_text)


class EndpointOutput(serializers.ModelSerializer):
    has_key = serializers.SerializerMethodField()

    class Meta:
        model = ModelEndpoint
        fields = [
            "id", "name", "base_url", "model", "has_key", "api_key_hint", "max_concurrency", "timeout_s",
            "input_price_per_mtok", "output_price_per_mtok", "created_at", "updated_at",
        ]  # fmt: skip

    def get_has_key(self, endpoint: ModelEndpoint) -> bool:
        return bool(endpoint.api_key_encrypted)


class EndpointInput(StrictInput):
    name = serializers.CharField(max_length=100)
    base_url = serializers.CharField(
        max_length=500, required=False, allow_blank=True, default="",
        help_text="Up to /v1: https://api.openai.com/v1. Empty when `model` is a deployed fine-tune (ft:…).",
    )  # fmt: skip
    model = serializers.CharField(max_length=200)
    api_key = serializers.CharField(
        required=False, allow_blank=True, write_only=True, trim_whitespace=True,
        help_text="The endpoint's own key, stored encrypted and never shown again. On a change: absent keeps it, "
        "empty removes it.",
    )  # fmt: skip
    max_concurrency = serializers.IntegerField(min_value=1, max_value=MAX_CONCURRENCY, default=8)
    timeout_s = serializers.IntegerField(min_value=1, max_value=MAX_TIMEOUT_S, default=120)
    input_price_per_mtok = _price("USD per million prompt tokens; null: the price table's.")
    output_price_per_mtok = _price("USD per million completion tokens; null: the price table's.")


def _fields(data: dict, endpoint: ModelEndpoint | None = None) -> EndpointFields:
    """The fields given, the endpoint's own for those not given (a partial change)."""
    names = EndpointFields.__dataclass_fields__
    current = {name: getattr(endpoint, name) for name in names} if endpoint else {}
    given = {name: data[name] for name in names if name in data}
    for name in ("input_price_per_mtok", "output_price_per_mtok"):
        if given.get(name) is not None:
            given[name] = Decimal(repr(given[name])).quantize(Decimal("0.000001"))
    return EndpointFields(**(current | given))


def _endpoint_or_404(project: Project, endpoint_id: int) -> ModelEndpoint:
    endpoint = ModelEndpoint.objects.filter(project=project, pk=endpoint_id).first()
    if endpoint is None:
        raise exceptions.NotFound(f"Endpoint {endpoint_id} not found in project '{project.slug}'.")
    return endpoint


class EndpointsApi(ProjectScopedApi):
    @extend_schema(operation_id="endpoints_list", summary="Model endpoints, by name", parameters=PAGE_PARAMETERS,
                   responses=page_of("EndpointPage", EndpointOutput(many=True)))  # fmt: skip
    def get(self, request: Request) -> Response:
        project = project_for_request(request)
        endpoints = ModelEndpoint.objects.filter(project=project)
        page = ascending_page(endpoints, key="name", cursor=page_cursor(request), size=page_size(request))
        return Response(page_body(page, EndpointOutput))

    @extend_schema(
        operation_id="endpoints_create", summary="Add a model endpoint (owners)", request=EndpointInput,
        responses={201: EndpointOutput},
        description="An OpenAI-compatible chat API (vLLM, Ollama, llama.cpp, TGI, a provider) on a host that "
        "LOGTUNE_ENDPOINT_HOSTS allows. The key is stored encrypted and never returned.",
    )  # fmt: skip
    def post(self, request: Request) -> Response:
        project = project_for_request(request, role=Role.OWNER)
        data = EndpointInput(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint = _saved(lambda: endpoint_create(
            project=project, fields=_fields(data.validated_data), secret=data.validated_data.get("api_key", ""),
            **request_actor(request),
        ))  # fmt: skip
        return Response(EndpointOutput(endpoint).data, status=status.HTTP_201_CREATED)


def _saved(save: Callable[[], ModelEndpoint]) -> ModelEndpoint:
    """The saved endpoint; a service's refusal as the API's 400, by field."""
    try:
        return save()
    except ValidationError as exc:
        raise exceptions.ValidationError(exc.message_dict) from None


class EndpointDetailApi(ProjectScopedApi):
    @extend_schema(operation_id="endpoints_retrieve", summary="A model endpoint", responses=EndpointOutput)
    def get(self, request: Request, endpoint_id: int) -> Response:
        return Response(EndpointOutput(_endpoint_or_404(project_for_request(request), endpoint_id)).data)

    @extend_schema(
        operation_id="endpoints_update", summary="Change a model endpoint (owners)",
        request=EndpointInput(partial=True), responses=EndpointOutput,
    )  # fmt: skip
    def patch(self, request: Request, endpoint_id: int) -> Response:
        project = project_for_request(request, role=Role.OWNER)
        endpoint = _endpoint_or_404(project, endpoint_id)
        data = EndpointInput(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        endpoint = _saved(lambda: endpoint_update(
            endpoint=endpoint, fields=_fields(data.validated_data, endpoint),
            secret=data.validated_data.get("api_key"), **request_actor(request),
        ))  # fmt: skip
        return Response(EndpointOutput(endpoint).data)

    @extend_schema(operation_id="endpoints_destroy", summary="Remove a model endpoint (owners)", responses={204: None})
    def delete(self, request: Request, endpoint_id: int) -> Response:
        project = project_for_request(request, role=Role.OWNER)
        endpoint_delete(endpoint=_endpoint_or_404(project, endpoint_id), **request_actor(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


_CHECK_RESULT = inline_serializer(
    "EndpointCheck",
    {
        "ok": serializers.BooleanField(),
        "answer": serializers.CharField(help_text="The text it answered, cut to 200 characters."),
        "latency_ms": serializers.IntegerField(),
        "error": serializers.CharField(help_text="What went wrong; empty when it answered."),
    },
)


class EndpointCheckApi(ProjectScopedApi):
    @extend_schema(
        operation_id="endpoints_check", summary="Check that an endpoint answers (editors)", request=None,
        responses=_CHECK_RESULT,
        description='One tiny call ("Reply with the word OK.", 8 tokens at most), no retries, 15 s at most.',
    )  # fmt: skip
    def post(self, request: Request, endpoint_id: int) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        endpoint = _endpoint_or_404(project, endpoint_id)
        try:
            answer = endpoint_check(endpoint)
        except (EndpointRefused, SecretUnreadable) as exc:
            return Response({"ok": False, "answer": "", "latency_ms": 0, "error": str(exc)})
        return Response(
            {"ok": not answer.error, "answer": answer.text[:200], "latency_ms": answer.latency_ms,
             "error": answer.error}
        )  # fmt: skip
