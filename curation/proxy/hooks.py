"""What another app adds to the proxy: a router that sends some calls to a deployed fine-tune (training's serving,
registered in `TrainingConfig.ready`). Curation imports no other app; the proxy asks the router instead.

The router decides in the request (cheaply: no query on most calls) and the proxy does the forwarding, the fallback
and the timing; once the call is over, the router takes the call's log and stores it with its route's record.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Routing:
    """Where a call goes besides (or instead of) the project's upstream."""

    mode: str  # "direct" (the call named a deployment), "canary" or "shadow"
    url: str  # the model server's chat completions URL
    body: bytes  # the request as the fine-tune gets it: the caller's, its `model` renamed when it named another
    served_name: str  # the deployment's model name, "ft:<project>/<name>"
    route_id: int | None = None  # None for a direct call
    route_name: str = ""
    serve: bool = False  # the fine-tune answers the caller (direct, or a canary call the share picked)
    timeout_s: float = 10.0  # canary: the fine-tune's first byte must come within this, or the provider answers
    checks: tuple[str, ...] = ()  # canary: "json", "tools": what its answer must pass to be used
    tags: tuple[str, ...] = field(default=())  # added to the call's log (its route and model)

    def as_dict(self) -> dict:
        return {
            "mode": self.mode, "served_name": self.served_name, "route_id": self.route_id,
            "route_name": self.route_name, "serve": self.serve, "url": self.url,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class Refusal:
    """The router's answer to a call it cannot serve (a `model` naming no deployment that serves): not forwarded."""

    status: int
    message: str
    kind: str


class ProxyRouter(Protocol):
    def route(
        self, *, project_id: int, provider: str, path: str, body: bytes, headers: Mapping[str, str]
    ) -> Routing | Refusal | None:
        """Where the call goes, or None: to the project's upstream only, as any call."""
        ...

    def answer_problem(self, *, routing: Routing, request_body: bytes, answer: dict) -> str:
        """Why a canary's answer (a `chat.completion`) must not go to the caller, or "" when it may."""
        ...

    def store(self, *, log: dict, routed: dict) -> bool:
        """Queue (or, with the broker down, do) the storing of a routed call's log and its route's record. `routed`
        says what happened (Routing.as_dict and the fine-tune's side). True when it took the log."""
        ...


_routers: list[ProxyRouter] = []


def proxy_router_register(router: ProxyRouter) -> None:
    """Make `router` the proxy's (once; a second registration of an equal one is ignored)."""
    if router not in _routers:
        _routers.append(router)


def proxy_router() -> ProxyRouter | None:
    return _routers[0] if _routers else None
