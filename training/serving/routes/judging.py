"""The judge of shadow pairs (docs/routes.md#judging-shadow-pairs): on a shadow route with a judge endpoint, a sample
of the calls (`judge_sample`) has its two answers, the provider's and the fine-tune's, judged side by side in both
orders, as an evaluation's pairs are (training/evaluation/judge.py). The verdict is stored on the call.

Which calls are in the sample follows from the call's id alone, so a redelivered task decides the same. A task
judges its call with the other pairs of the route still waiting (up to JUDGE_BATCH, from the last JUDGE_WINDOW),
each pair claimed by a row lock that concurrent tasks skip, so no pair is judged twice."""

import hashlib
import logging
from datetime import timedelta

from django.db import transaction
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerUnavailable

from curation.models import LogEntry
from curation.text.rendering import content_text
from training.endpoints.secrets import SecretUnreadable
from training.endpoints.services import EndpointRefused, endpoint_target
from training.evaluation.judge import Pair, judge_pairs
from training.models import RouteCall, RouteMode
from training.serving.routes.tasks import route_pairs_judge_task

logger = logging.getLogger(__name__)

JUDGE_BATCH = 16  # pairs judged by one task, in one run of concurrent calls
JUDGE_WINDOW = timedelta(hours=1)  # pairs left waiting longer than this are no longer picked up
_CANDIDATES = 200  # waiting calls looked at for the sample, newest first


def in_judge_sample(*, call_id: int, share: float) -> bool:
    """Whether the call is in the judged sample: a hash of its id, uniform in [0, 1), below `share`."""
    digest = hashlib.sha256(f"route-call:{call_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def route_call_judge_maybe(*, call: RouteCall) -> None:
    """Called by the serving code once it has stored a shadow call: queue the judging of the pair when its route
    has a judge and the call is in the sample. Sent once the caller's transaction commits; with the broker down the
    pair stays unjudged (a later call's task of the same route takes it, within JUDGE_WINDOW)."""
    route = call.route
    if call.mode != RouteMode.SHADOW or route.judge_id is None or call.verdict is not None:
        return
    if not in_judge_sample(call_id=call.pk, share=route.judge_sample):
        return

    def send() -> None:
        try:
            route_pairs_judge_task.delay(call.pk)
        except BrokerUnavailable as exc:
            logger.warning("serving.route_judge_not_queued call=%s: %s", call.pk, exc)

    transaction.on_commit(send)


def _answer_text(message: dict | None) -> str:
    """An answer as the judge reads it: its text, and its tool calls as `[tool call name(arguments)]`."""
    if not message:
        return ""
    text = content_text(message.get("content"))
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        text += f"\n[tool call {function.get('name', '')}({function.get('arguments', '')})]"
    return text.strip()


def _last_answer(messages: list) -> tuple[list[dict], dict | None]:
    """The conversation before the last assistant message, and that message (None when there is none)."""
    for index in range(len(messages) - 1, -1, -1):
        if isinstance(messages[index], dict) and messages[index].get("role") == "assistant":
            return messages[:index], messages[index]
    return messages, None


def pair_of(call: RouteCall, logs: dict[str, LogEntry]) -> Pair | None:
    """The judge's pair of a shadow call: the logged request's messages, the fine-tune's answer (the candidate) and
    the provider's; None when either log is missing or holds no answer."""
    provider, finetune = logs.get(call.provider_log), logs.get(call.finetune_log)
    if provider is None or finetune is None:
        return None
    conversation, theirs = _last_answer(list(provider.messages or []))
    ours = _last_answer(list(finetune.messages or []))[1]
    candidate, other = _answer_text(ours), _answer_text(theirs)
    if not conversation or not candidate or not other:
        return None
    return Pair(conversation=conversation, candidate=candidate, other=other)


def _waiting(call: RouteCall) -> list[int]:
    """The call's id, and those of other pairs of its route in the sample and still unjudged."""
    route = call.route
    recent = (
        RouteCall.objects.filter(route=route, mode=RouteMode.SHADOW, verdict__isnull=True,
                                 created_at__gte=timezone.now() - JUDGE_WINDOW)
        .exclude(pk=call.pk).exclude(provider_log="").exclude(finetune_log="")
        .order_by("-created_at", "-id").values_list("pk", flat=True)[:_CANDIDATES]
    )  # fmt: skip
    others = [pk for pk in recent if in_judge_sample(call_id=pk, share=route.judge_sample)]
    return [call.pk, *others[: JUDGE_BATCH - 1]]


def route_pairs_judge(*, call_id: int) -> int:
    """Judge the call's pair, with other waiting pairs of its route; returns the number of verdicts stored. A pair
    whose judge call failed, or whose logs are not stored, stays unjudged (logged)."""
    call = RouteCall.objects.select_related("route__judge", "route__project").filter(pk=call_id).first()
    if call is None or call.verdict is not None or call.route.judge is None:
        return 0
    route = call.route
    try:
        target = endpoint_target(route.judge)  # type: ignore[arg-type]
    except (EndpointRefused, SecretUnreadable) as exc:
        logger.error("serving.route_judge_failed route=%s call=%s: %s", route.pk, call.pk, exc)
        return 0
    with transaction.atomic():
        # Locked while judged: a concurrent task of the same route skips them and judges others.
        claimed = list(
            RouteCall.objects.select_for_update(skip_locked=True)
            .filter(pk__in=_waiting(call), verdict__isnull=True).order_by("id")
        )  # fmt: skip
        names = {c.provider_log for c in claimed} | {c.finetune_log for c in claimed}
        found = LogEntry.objects.filter(project_id=route.project_id, external_id__in=names - {""})
        logs = {log.external_id or "": log for log in found}
        pairs = [(c, pair) for c in claimed if (pair := pair_of(c, logs)) is not None]
        for unjudgeable in {c.pk for c in claimed} - {c.pk for c, _ in pairs}:
            logger.warning("serving.route_pair_unjudgeable call=%s: a log is not stored, or holds no answer",
                           unjudgeable)  # fmt: skip
        if not pairs:
            return 0
        verdicts = judge_pairs(target, [pair for _, pair in pairs])
        now, judged = timezone.now(), []
        for (pending, _), verdict in zip(pairs, verdicts, strict=True):
            if verdict is None or verdict.error:
                logger.error("serving.route_judge_failed route=%s call=%s: %s", route.pk, pending.pk,
                             verdict.error if verdict else "not judged")  # fmt: skip
                continue
            pending.verdict, pending.judged_at = verdict.outcome, now
            judged.append(pending)
        RouteCall.objects.bulk_update(judged, ["verdict", "judged_at"])
    return len(judged)
