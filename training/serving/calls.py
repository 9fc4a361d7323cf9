"""A routed call after its answer went out: its log (tagged with its route and model), the fine-tune's failed try
when a canary fell back, the shadow answer when a shadow route picked it, and the route's record of the call
(RouteCall), which the route page counts.

The proxy hands the call over once the caller has the answer (ServingRouter.store); storing runs in a task on the
default queue, the shadow's call to the fine-tune in a task of its own on the `shadow` queue, so neither costs the
caller anything.
"""

import logging

import httpx
import orjson
from django.db import transaction

from curation.models import LogEntry
from curation.proxy.logs import proxy_log_store
from training.models import Deployment, DeploymentStatus, ProxyRoute, RouteCall, RouteMode, Side

logger = logging.getLogger(__name__)

SHADOW_TIMEOUT_S = 600.0  # a shadow answer is as long as a generation takes: nobody waits for it


def routed_call_queue(*, log: dict, routed: dict) -> None:
    """Queue storing the call (its log first); with the broker down, store it here (the shadow is then skipped)."""
    from training.serving.tasks import routed_call_store_task

    try:
        routed_call_store_task.apply_async(
            args=[log, routed], retry=True, retry_policy={"max_retries": 1, "interval_start": 0.1, "interval_max": 0.1}
        )
    except Exception as exc:  # whatever the broker raises, the call itself has succeeded
        logger.warning("proxy.log_not_queued", extra={"project_id": log["project_id"], "error": repr(exc)})
        try:
            routed_call_store(log=log, routed=routed, shadow=False)
        except Exception as store_exc:  # the database too: nothing left to keep the log in
            logger.error("proxy.log_lost", extra={"project_id": log["project_id"], "error": repr(store_exc)})


def routed_call_store(*, log: dict, routed: dict, shadow: bool = True) -> None:
    """Store the call's log and what the route did with it. Idempotent: a redelivered task finds the logs stored
    (their external ids) and the record written."""
    served_by = routed.get("served_by", Side.PROVIDER)
    external_id = log["external_id"]
    served_name = routed.get("served_name", "")
    log["metadata"]["route"] = _route_metadata(routed, served_by=served_by)
    if served_by == Side.FINETUNE:
        log["metadata"]["upstream"] = served_name  # the model server's address is the operator's, not the members'
        log["tags"] = _with(log["tags"], f"model:{served_name}")
    proxy_log_store(**log)
    attempt = _attempt_store(log=log, routed=routed) if routed.get("fallback") else ""
    if routed.get("route_id") is None:
        return  # a call that named the deployment itself: no route to record
    if routed.get("mode") == RouteMode.SHADOW:
        if shadow:
            from training.serving.tasks import routed_shadow_task

            routed_shadow_task.apply_async(args=[log, routed])
        return
    fine_log = external_id if served_by == Side.FINETUNE else attempt
    provider_log = external_id if served_by == Side.PROVIDER else ""
    _record(
        routed=routed, served_by=served_by, provider_log=provider_log, finetune_log=fine_log,
        provider=(log["status_code"], log["latency_ms"]) if provider_log else None,
        finetune=(
            (log["status_code"], log["latency_ms"]) if served_by == Side.FINETUNE
            else (routed.get("finetune_status"), routed.get("finetune_ms")) if routed.get("fallback") else None
        ),
        project_id=log["project_id"],
    )  # fmt: skip


def routed_shadow_run(*, log: dict, routed: dict) -> None:
    """Ask the fine-tune the shadowed call, store its answer as a log linked to the provider's, record the pair and
    hand it to the judge's sample. A redelivered task whose pair is recorded does nothing."""
    external_id = log["external_id"]
    shadow_id = f"{external_id}-shadow"
    if RouteCall.objects.filter(route_id=routed["route_id"], provider_log=external_id).exists():
        return
    url = _serving_url(routed)
    status, ms, answer, streamed = None, None, "", False
    if url:
        status, ms, answer, streamed = _ask(url, _renamed(log["request_body"], routed["served_name"]))
    if status is not None:
        proxy_log_store(
            project_id=log["project_id"], provider="openai", request_body=log["request_body"], response_body=answer,
            streamed=streamed, status_code=status, latency_ms=ms or 0.0,
            tags=_with(_with(log["tags"], f"model:{routed['served_name']}"), "shadow"),
            metadata={"upstream": routed["served_name"], "stream": streamed, "complete": True,
                      "route": {**_route_metadata(routed, served_by=Side.FINETUNE), "shadow_of": external_id}},
            external_id=shadow_id,
        )  # fmt: skip
    call = _record(
        routed=routed, served_by=Side.PROVIDER, provider_log=external_id, finetune_log=shadow_id if status else "",
        provider=(log["status_code"], log["latency_ms"]), finetune=(status, ms) if status is not None else None,
        project_id=log["project_id"], fallback="" if url else "not serving",
    )  # fmt: skip
    if call is not None and status == 200 and log["status_code"] == 200:
        from training.serving.routes.judging import route_call_judge_maybe

        route_call_judge_maybe(call=call)


def _ask(url: str, body: bytes) -> tuple[int | None, float | None, str, bool]:
    """The fine-tune's answer to a shadowed call: status, milliseconds, body text, streamed; status None when it
    could not be reached (a shadow failing costs the caller nothing, and is recorded as such)."""
    import time

    started = time.perf_counter()
    try:
        with httpx.Client(timeout=httpx.Timeout(SHADOW_TIMEOUT_S, connect=10.0)) as client:
            response = client.post(url, content=body, headers={"Content-Type": "application/json"})
    except httpx.HTTPError as exc:
        logger.warning("serving.shadow_failed", extra={"url": url, "error": repr(exc)})
        return None, None, "", False
    ms = round((time.perf_counter() - started) * 1000, 1)
    streamed = response.headers.get("content-type", "").startswith("text/event-stream")
    return response.status_code, ms, response.text, streamed


def _serving_url(routed: dict) -> str:
    """Where the deployment answers now (the request's view may be seconds old), or "" when it is not serving."""
    url = (
        Deployment.objects.filter(served_name=routed["served_name"], status=DeploymentStatus.SERVING)
        .values_list("server__url", flat=True)
        .first()
    )
    return url.rstrip("/") + "/chat/completions" if url else ""


def _renamed(request_body: str, served_name: str) -> bytes:
    try:
        request = orjson.loads(request_body)
    except orjson.JSONDecodeError:
        return request_body.encode()
    return orjson.dumps({**request, "model": served_name}) if isinstance(request, dict) else request_body.encode()


def _attempt_store(*, log: dict, routed: dict) -> str:
    """The fine-tune's answer a canary did not use (an error status, an answer failing a check), kept as a log of its
    own beside the provider's; "" when nothing came back (a timeout, a server that could not be reached)."""
    if routed.get("finetune_status") is None:
        return ""
    attempt_id = f"{log['external_id']}-finetune"
    proxy_log_store(
        project_id=log["project_id"], provider="openai", request_body=log["request_body"],
        response_body=routed.get("finetune_response", ""), streamed=bool(routed.get("finetune_streamed")),
        status_code=routed["finetune_status"], latency_ms=routed.get("finetune_ms") or 0.0,
        tags=_with(_with(log["tags"], f"model:{routed['served_name']}"), "fallback"),
        metadata={"upstream": routed["served_name"], "stream": bool(routed.get("finetune_streamed")),
                  "complete": True, "route": {**_route_metadata(routed, served_by=Side.FINETUNE),
                                              "answered_caller": False, "pair": log["external_id"]}},
        external_id=attempt_id,
    )  # fmt: skip
    return attempt_id


def _route_metadata(routed: dict, *, served_by: str) -> dict:
    meta = {
        "mode": routed.get("mode"), "route": routed.get("route_name") or None, "route_id": routed.get("route_id"),
        "deployment": routed.get("served_name"), "side": str(served_by),
    }  # fmt: skip
    if routed.get("fallback"):
        meta["fallback"] = routed["fallback"]
    return meta


def _with(tags: list[str], tag: str) -> list[str]:
    return tags if tag in tags or len(tag) > 100 else [*tags, tag]


def _record(
    *,
    routed: dict,
    served_by: str,
    provider_log: str,
    finetune_log: str,
    provider: tuple | None,
    finetune: tuple | None,
    project_id: int,
    fallback: str = "",
) -> RouteCall | None:
    route = ProxyRoute.objects.filter(pk=routed["route_id"], project_id=project_id).first()
    if route is None:
        return None  # the route was deleted since
    tokens: dict[str | None, dict] = {
        row["external_id"]: dict(row)
        for row in LogEntry.objects.filter(
            project_id=project_id, external_id__in=[x for x in (provider_log, finetune_log) if x]
        ).values("external_id", "prompt_tokens", "completion_tokens", "model")
    }
    provider_row: dict = tokens.get(provider_log, {})
    finetune_row: dict = tokens.get(finetune_log, {})
    with transaction.atomic():
        exists = RouteCall.objects.filter(route=route, provider_log=provider_log, finetune_log=finetune_log)
        if (provider_log or finetune_log) and exists.exists():
            return None
        return RouteCall.objects.create(
            route=route, mode=routed["mode"], served_by=served_by, fallback=routed.get("fallback", "") or fallback,
            provider_status=provider[0] if provider else None, provider_ms=provider[1] if provider else None,
            provider_log=provider_log, provider_prompt_tokens=provider_row.get("prompt_tokens"),
            provider_completion_tokens=provider_row.get("completion_tokens"),
            provider_model=(provider_row or finetune_row).get("model") or "",
            finetune_status=finetune[0] if finetune else None, finetune_ms=finetune[1] if finetune else None,
            finetune_log=finetune_log, finetune_prompt_tokens=finetune_row.get("prompt_tokens"),
            finetune_completion_tokens=finetune_row.get("completion_tokens"),
        )  # fmt: skip
