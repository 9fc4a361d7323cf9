"""REST API of proxy routes: members list and read them and their figures; editors (API keys too) add, change,
promote, roll back and remove them."""

from collections.abc import Callable
from datetime import UTC, datetime

from django.core.exceptions import ValidationError
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from curation.common.apis import IdField, ProjectScopedApi, StrictInput, request_actor
from curation.common.listing import PAGE_PARAMETERS, page_body, page_cursor, page_of, page_size
from curation.common.pagination import ascending_page
from curation.common.permissions import project_for_request
from curation.models import Project, Role
from training.models import ModelEndpoint, ProxyRoute, RouteMode
from training.serving.deployments.selectors import deployment_get
from training.serving.routes.selectors import next_share, route_get, route_stats
from training.serving.routes.services import (
    MAX_POSITION,
    MAX_TIMEOUT_MS,
    MIN_TIMEOUT_MS,
    RouteFields,
    route_create,
    route_delete,
    route_promote,
    route_rollback,
    route_update,
)


def _share(help_text: str) -> serializers.FloatField:
    return serializers.FloatField(min_value=0, max_value=1, help_text=help_text, required=False)


class RouteOutput(serializers.ModelSerializer):
    deployment = serializers.IntegerField(source="deployment_id")
    model = serializers.CharField(source="deployment.served_name", help_text="The deployment's model name.")
    judge = serializers.IntegerField(source="judge_id", allow_null=True)
    next_share = serializers.SerializerMethodField(help_text="What promoting it without a share sets; null at 100%.")

    class Meta:
        model = ProxyRoute
        fields = [
            "id", "name", "deployment", "model", "mode", "active", "position", "match_model", "match_route",
            "match_metadata_key", "match_metadata_value", "share", "next_share", "timeout_ms", "check_json",
            "check_tools", "judge", "judge_sample", "created_at", "updated_at",
        ]  # fmt: skip

    def get_next_share(self, route: ProxyRoute) -> float | None:
        return next_share(route.share if route.active and route.mode == RouteMode.CANARY else 0.0)


class RouteChangeInput(StrictInput):
    match_model = serializers.CharField(max_length=200, allow_blank=True, required=False,
                                        help_text="The request's `model`; empty: any.")  # fmt: skip
    match_route = serializers.CharField(max_length=100, allow_blank=True, required=False,
                                        help_text="The `X-Logtune-Route` header's value; empty: any.")  # fmt: skip
    match_metadata_key = serializers.CharField(max_length=100, allow_blank=True, required=False,
                                               help_text="A key of the request's `metadata`; empty: any.")  # fmt: skip
    match_metadata_value = serializers.CharField(
        max_length=200, allow_blank=True, required=False,
        help_text="Its value; empty: the key is present. Needs `match_metadata_key`.",
    )  # fmt: skip
    share = _share("Of the matching calls: shadowed (shadow) or answered by the fine-tune (canary).")
    timeout_ms = serializers.IntegerField(
        min_value=MIN_TIMEOUT_MS, max_value=MAX_TIMEOUT_MS, required=False,
        help_text="Canary: the fine-tune's first byte within this, or the provider answers.",
    )  # fmt: skip
    check_json = serializers.BooleanField(
        required=False, help_text="Canary: an answer must satisfy `response_format`."
    )
    check_tools = serializers.BooleanField(
        required=False, help_text="Canary: tool calls must name a tool given, with JSON arguments."
    )
    judge = IdField(allow_null=True, required=False, help_text="A model endpoint judging a sample of shadow pairs.")
    judge_sample = _share("The share of shadow pairs judged.")
    position = serializers.IntegerField(
        min_value=0, max_value=MAX_POSITION, required=False,
        help_text="The first active matching route, by position, takes a call.",
    )  # fmt: skip


class RouteCreateInput(RouteChangeInput):
    name = serializers.CharField(max_length=64, help_text="1 to 64 lowercase letters, digits, dashes, underscores.")
    deployment = IdField(help_text="A live deployment of the project.")
    mode = serializers.ChoiceField(choices=RouteMode.choices, default=RouteMode.SHADOW)


class RoutePromoteInput(StrictInput):
    share = serializers.FloatField(
        min_value=0, max_value=1, required=False, allow_null=True,
        help_text="The share to set, above the current one; absent: the next step of 1%, 5%, 10%, 25%, 50%, 100% "
        "(a shadow route becomes a canary at 1%).",
    )  # fmt: skip


class RouteEstimateOutput(serializers.Serializer):
    value = serializers.FloatField()
    low = serializers.FloatField()
    high = serializers.FloatField()
    n = serializers.IntegerField()


class RouteSideOutput(serializers.Serializer):
    p50_ms = serializers.FloatField(allow_null=True)
    p95_ms = serializers.FloatField(allow_null=True)
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()


class RouteWinRateOutput(serializers.Serializer):
    rate = RouteEstimateOutput(allow_null=True, help_text="(wins + ½ ties) / pairs, with its 95% Wilson interval.")
    wins = serializers.IntegerField()
    ties = serializers.IntegerField()
    losses = serializers.IntegerField()


class RouteStatsOutput(serializers.Serializer):
    since = serializers.DateTimeField(allow_null=True)
    calls = serializers.IntegerField()
    finetune_served = serializers.IntegerField(help_text="Calls the fine-tune answered.")
    finetune_share = RouteEstimateOutput(allow_null=True, help_text="Their share, with its 95% Wilson interval.")
    fallbacks = serializers.DictField(child=serializers.IntegerField(), help_text="Calls by fallback reason.")
    provider = RouteSideOutput()
    finetune = RouteSideOutput()
    cost_saved_usd = serializers.DecimalField(max_digits=20, decimal_places=8, coerce_to_string=False)
    unpriced_calls = serializers.IntegerField(help_text="Calls the fine-tune answered that have no price.")
    win_rate = RouteWinRateOutput(help_text="The judge's, on the shadow pairs it judged.")
    judged = serializers.IntegerField()


def _route_or_404(project: Project, route_id: int) -> ProxyRoute:
    route = route_get(project=project, route_id=route_id)
    if route is None:
        raise exceptions.NotFound(f"Route {route_id} not found in project '{project.slug}'.")
    return route


def _judge(project: Project, data: dict, current: ModelEndpoint | None = None) -> ModelEndpoint | None:
    if "judge" not in data:
        return current
    if data["judge"] is None:
        return None
    judge = ModelEndpoint.objects.filter(project=project, pk=data["judge"]).first()
    if judge is None:
        raise exceptions.ValidationError({"judge": [f"Endpoint {data['judge']} not found in this project."]})
    return judge


def _fields(project: Project, data: dict, route: ProxyRoute | None = None) -> RouteFields:
    """The fields given, the route's own for those not given (a partial change)."""
    current = RouteFields.of(route) if route is not None else RouteFields()
    names = RouteFields.__dataclass_fields__
    given = {name: data[name] for name in names if name in data and name != "judge"}
    fields = RouteFields(**{name: getattr(current, name) for name in names} | given)
    fields.judge = _judge(project, data, current.judge)
    return fields


def _saved(save: Callable[[], ProxyRoute]) -> ProxyRoute:
    try:
        return save()
    except ValidationError as exc:
        raise exceptions.ValidationError(exc.message_dict) from None


class RoutesApi(ProjectScopedApi):
    @extend_schema(operation_id="routes_list", summary="Proxy routes, by name", parameters=PAGE_PARAMETERS,
                   responses=page_of("RoutePage", RouteOutput(many=True)))  # fmt: skip
    def get(self, request: Request) -> Response:
        project = project_for_request(request)
        routes = ProxyRoute.objects.filter(project=project).select_related("deployment")
        page = ascending_page(routes, key="name", cursor=page_cursor(request), size=page_size(request))
        return Response(page_body(page, RouteOutput))

    @extend_schema(
        operation_id="routes_create", summary="Add a proxy route (editors)", request=RouteCreateInput,
        responses={201: RouteOutput},
        description="Matches proxied Chat Completions calls (each condition left empty matches any) and sends them "
        "to a live deployment: shadowed (the provider answers, the fine-tune answers too, in the background) or as "
        "a canary (the fine-tune answers a share, the provider on a failure). Share by default: 100% of a shadow "
        "route's calls, 1% of a canary's. Audited as `route.create`.",
    )  # fmt: skip
    def post(self, request: Request) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        data = RouteCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        deployment = deployment_get(project=project, deployment_id=values["deployment"])
        if deployment is None:
            raise exceptions.ValidationError({"deployment": [f"Deployment {values['deployment']} not found."]})
        route = _saved(lambda: route_create(
            project=project, name=values["name"], deployment=deployment, mode=values["mode"],
            fields=_fields(project, values), **request_actor(request),
        ))  # fmt: skip
        return Response(RouteOutput(route).data, status=status.HTTP_201_CREATED)


class RouteDetailApi(ProjectScopedApi):
    @extend_schema(operation_id="routes_retrieve", summary="A proxy route", responses=RouteOutput)
    def get(self, request: Request, route_id: int) -> Response:
        return Response(RouteOutput(_route_or_404(project_for_request(request), route_id)).data)

    @extend_schema(
        operation_id="routes_update", summary="Change a proxy route (editors)", request=RouteChangeInput,
        responses=RouteOutput, description="The fields given; the others stay. Audited as `route.update`, each value "
        "changed from and to.",
    )  # fmt: skip
    def patch(self, request: Request, route_id: int) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        route = _route_or_404(project, route_id)
        data = RouteChangeInput(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        route = _saved(lambda: route_update(route=route, fields=_fields(project, data.validated_data, route),
                                            **request_actor(request)))  # fmt: skip
        return Response(RouteOutput(_route_or_404(project, route.pk)).data)

    @extend_schema(
        operation_id="routes_destroy", summary="Remove a proxy route (editors)", responses={204: None},
        description="With the record of its calls; their logs stay. Audited as `route.delete`.",
    )  # fmt: skip
    def delete(self, request: Request, route_id: int) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        route_delete(route=_route_or_404(project, route_id), **request_actor(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class RoutePromoteApi(ProjectScopedApi):
    @extend_schema(
        operation_id="routes_promote", summary="Send more calls to the fine-tune (editors)", request=RoutePromoteInput,
        responses=RouteOutput,
        description="A canary to the next step of 1%, 5%, 10%, 25%, 50%, 100%, or to `share`; a shadow route "
        "becomes a canary (at 1%, or `share`); a route rolled back is active again. Refused (400) for a deployment "
        "that no longer serves. Audited as `route.promote`, from and to.",
    )  # fmt: skip
    def post(self, request: Request, route_id: int) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        route = _route_or_404(project, route_id)
        data = RoutePromoteInput(data=request.data)
        data.is_valid(raise_exception=True)
        share = data.validated_data.get("share")
        route = _saved(lambda: route_promote(route=route, share=share, **request_actor(request)))
        return Response(RouteOutput(_route_or_404(project, route.pk)).data)


class RouteRollbackApi(ProjectScopedApi):
    @extend_schema(
        operation_id="routes_rollback", summary="Send every call to the provider only, now (editors)", request=None,
        responses=RouteOutput,
        description="Share 0 and inactive, from the next call on. Audited as `route.rollback` with what it was.",
    )  # fmt: skip
    def post(self, request: Request, route_id: int) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        route = route_rollback(route=_route_or_404(project, route_id), **request_actor(request))
        return Response(RouteOutput(_route_or_404(project, route.pk)).data)


SINCE = OpenApiParameter(
    "since", {"type": "string", "format": "date-time"}, description="Only the calls from then on; absent: all."
)


class RouteStatsApi(ProjectScopedApi):
    @extend_schema(operation_id="routes_stats", summary="A route's figures", parameters=[SINCE],
                   responses=RouteStatsOutput,
                   description="Calls, the share the fine-tune answered, fallbacks by reason, each side's latency "
                   "percentiles and tokens, the cost saved and the judge's win rate on shadow pairs "
                   "(docs/routes.md).")  # fmt: skip
    def get(self, request: Request, route_id: int) -> Response:
        project = project_for_request(request)
        route = _route_or_404(project, route_id)
        since = _since(request.query_params.get("since") or "")
        return Response(RouteStatsOutput(route_stats(route=route, since=since)).data)


def _since(raw: str) -> datetime | None:
    if not raw:
        return None
    try:
        # In UTC: PostgreSQL takes offsets up to 15:59 only, and Python no year past 9999 once in UTC.
        return serializers.DateTimeField().to_internal_value(raw).astimezone(UTC)
    except serializers.ValidationError as exc:
        raise exceptions.ValidationError({"since": exc.detail}) from None
    except OverflowError:
        raise exceptions.ValidationError({"since": ["Out of range once in UTC."]}) from None
