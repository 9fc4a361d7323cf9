"""The proxy's router (curation/proxy/hooks.py): which calls a deployed fine-tune answers or shadows.

It runs in the request, so it costs a proxied call next to nothing: the project's serving deployments and active
routes are read once every few seconds per process, and a call's body is parsed only when the project has one of
them or the body names a deployment (`"ft:`).
"""

import logging
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

import orjson

from curation.proxy.hooks import Refusal, Routing
from training.models import Deployment, DeploymentStatus, ProxyRoute, RouteMode

logger = logging.getLogger(__name__)

ROUTE_HEADER = "X-Logtune-Route"
# How long a process keeps a project's deployments and routes: a new route, a promotion or a rollback reaches every
# web process within this many seconds (the key cache's delay, docs/proxy.md).
TABLE_SECONDS = 5.0
_CHAT_PATH = "/chat/completions"


@dataclass(frozen=True, slots=True)
class _Route:
    id: int
    name: str
    mode: str
    deployment_id: int
    match_model: str
    match_route: str
    match_metadata_key: str
    match_metadata_value: str
    share: float
    timeout_s: float
    checks: tuple[str, ...]

    def matches(self, *, model: object, route_header: str, metadata: object) -> bool:
        if self.match_model and model != self.match_model:
            return False
        if self.match_route and route_header != self.match_route:
            return False
        if self.match_metadata_key:
            if not isinstance(metadata, dict) or self.match_metadata_key not in metadata:
                return False
            if self.match_metadata_value and str(metadata[self.match_metadata_key]) != self.match_metadata_value:
                return False
        return True


@dataclass(frozen=True, slots=True)
class _Table:
    read_at: float
    urls: dict[str, str]  # served name -> its server's chat completions URL, for deployments serving now
    names: dict[int, str]  # deployment id -> served name, for live deployments
    routes: tuple[_Route, ...]

    @property
    def empty(self) -> bool:
        return not self.urls and not self.routes


_tables: dict[int, _Table] = {}
_tables_lock = threading.Lock()


def serving_table_forget() -> None:
    """Read every project's deployments and routes again on the next call (tests, and a change in this process)."""
    with _tables_lock:
        _tables.clear()


def _table(project_id: int) -> _Table:
    now = time.monotonic()
    with _tables_lock:
        table = _tables.get(project_id)
    if table is not None and now - table.read_at < TABLE_SECONDS:
        return table
    deployments = Deployment.objects.filter(
        project_id=project_id,
        status__in=(DeploymentStatus.PENDING, DeploymentStatus.LOADING, DeploymentStatus.SERVING),
    ).values_list("pk", "served_name", "status", "server__url")
    urls = {
        name: url.rstrip("/") + _CHAT_PATH
        for _, name, status, url in deployments
        if status == DeploymentStatus.SERVING and url
    }
    routes = tuple(
        _Route(
            id=r.pk,
            name=r.name,
            mode=r.mode,
            deployment_id=r.deployment_id,
            match_model=r.match_model,
            match_route=r.match_route,
            match_metadata_key=r.match_metadata_key,
            match_metadata_value=r.match_metadata_value,
            share=r.share,
            timeout_s=r.timeout_ms / 1000,
            checks=tuple(name for name, on in (("json", r.check_json), ("tools", r.check_tools)) if on),
        )
        for r in ProxyRoute.objects.filter(project_id=project_id, active=True).order_by("position", "id")
    )
    table = _Table(read_at=now, urls=urls, names={pk: name for pk, name, _, _ in deployments}, routes=routes)
    with _tables_lock:
        _tables[project_id] = table
    return table


@dataclass(frozen=True)
class ServingRouter:
    """Registered with the proxy by `TrainingConfig.ready`."""

    def route(
        self, *, project_id: int, provider: str, path: str, body: bytes, headers: Mapping[str, str]
    ) -> Routing | Refusal | None:
        table = _table(project_id)
        if table.empty and b'"ft:' not in body:
            return None
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None  # the upstream answers it, and the log keeps it as it came
        if not isinstance(request, dict):
            return None
        model = request.get("model")
        chat = provider == "openai" and path == _CHAT_PATH
        if isinstance(model, str) and model.startswith("ft:"):
            return _direct(table, model, body, chat=chat)
        if not chat:
            return None  # a fine-tune speaks Chat Completions: other calls go to their provider only
        route_header = headers.get(ROUTE_HEADER, "")
        for route in table.routes:
            if route.matches(model=model, route_header=route_header, metadata=request.get("metadata")):
                return _routed(table, route, request)
        return None

    def answer_problem(self, *, routing: Routing, request_body: bytes, answer: dict) -> str:
        from training.serving.checks import answer_problem

        return answer_problem(request_body=request_body, answer=answer, checks=routing.checks)

    def store(self, *, log: dict, routed: dict) -> bool:
        from training.serving.calls import routed_call_queue

        routed_call_queue(log=log, routed=routed)
        return True


def _direct(table: _Table, model: str, body: bytes, *, chat: bool) -> Routing | Refusal:
    if not chat:
        return Refusal(
            400, f"{model} is a deployed fine-tune: call it at /proxy/openai/v1/chat/completions.",
            "invalid_request_error",
        )  # fmt: skip
    url = table.urls.get(model)
    if url is None:
        live = model in table.names.values()
        message = (
            f"The model {model} is deployed but not serving yet: its model server is still loading it."
            if live
            else f"The model {model} does not exist in this project, or is not deployed."
        )
        return Refusal(503 if live else 404, message, "model_not_found" if not live else "server_error")
    return Routing(mode="direct", url=url, body=body, served_name=model, serve=True, tags=(f"model:{model}",))


def _routed(table: _Table, route: _Route, request: dict) -> Routing | None:
    picked = route.share >= 1 or random.random() < route.share  # noqa: S311 (a share of traffic, not a secret)
    if route.mode == RouteMode.SHADOW and not picked:
        return None
    served_name = table.names.get(route.deployment_id, "")
    return Routing(
        mode=route.mode, url=table.urls.get(served_name, ""),
        body=orjson.dumps({**request, "model": served_name}) if picked else b"",
        served_name=served_name, route_id=route.id, route_name=route.name,
        serve=route.mode == RouteMode.CANARY and picked, timeout_s=route.timeout_s,
        checks=_checks_for(route.checks, request),
        tags=(f"route:{route.name}",),
    )  # fmt: skip


def _checks_for(checks: tuple[str, ...], request: dict) -> tuple[str, ...]:
    """The route's checks this request gives something to check: a canary's answer is read whole before it goes on
    only when its JSON or its tool calls must be checked; any other answer streams through as it comes."""
    response_format = request.get("response_format")
    wants_json = isinstance(response_format, dict) and response_format.get("type") in ("json_object", "json_schema")
    wants = {"json": wants_json, "tools": bool(request.get("tools"))}
    return tuple(check for check in checks if wants.get(check))
