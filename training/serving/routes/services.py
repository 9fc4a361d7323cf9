"""Writes of proxy routes (docs/routes.md): adding, changing, promoting, rolling back and removing a route. Editors
and API keys make them; each is audited (`route.create`, `route.update`, `route.promote`, `route.rollback`,
`route.delete`) with the values before and after."""

import re
from dataclasses import dataclass

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from curation.audit.services import audit_record
from curation.models import ApiKey, Project
from training.models import LIVE_DEPLOYMENT, Deployment, ModelEndpoint, ProxyRoute, RouteMode
from training.serving.routes.selectors import SHARE_STEPS, next_share

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MIN_TIMEOUT_MS, MAX_TIMEOUT_MS = 100, 600_000
MAX_POSITION = 10_000
_MATCH = ("match_model", "match_route", "match_metadata_key", "match_metadata_value")
_LIMITS = {"match_model": 200, "match_route": 100, "match_metadata_key": 100, "match_metadata_value": 200}


@dataclass(slots=True)
class RouteFields:
    """What a route matches and how it sends calls; every field but the route's name, deployment and mode."""

    match_model: str = ""
    match_route: str = ""
    match_metadata_key: str = ""
    match_metadata_value: str = ""
    share: float | None = None  # None on creation: 100% of a shadow route's calls, the first step (1%) of a canary's
    timeout_ms: int = 10_000
    check_json: bool = True
    check_tools: bool = True
    judge: ModelEndpoint | None = None
    judge_sample: float = 0.1
    position: int = 0

    @classmethod
    def of(cls, route: ProxyRoute) -> "RouteFields":
        return cls(**{name: getattr(route, name) for name in cls.__dataclass_fields__})


def route_problems(*, project: Project, fields: RouteFields) -> dict[str, str]:
    """What is wrong with the fields, by field name; empty when nothing is."""
    problems: dict[str, str] = {}
    for name in _MATCH:
        value = getattr(fields, name)
        if len(value) > _LIMITS[name]:
            problems[name] = f"At most {_LIMITS[name]} characters."
        elif "\x00" in value:
            problems[name] = "No NUL character."
    if fields.match_metadata_value and not fields.match_metadata_key:
        problems["match_metadata_value"] = "Name the metadata key whose value must match."
    if fields.share is not None and not 0 <= fields.share <= 1:
        problems["share"] = "A share from 0 to 1."
    if not 0 <= fields.judge_sample <= 1:
        problems["judge_sample"] = "A share from 0 to 1."
    if not MIN_TIMEOUT_MS <= fields.timeout_ms <= MAX_TIMEOUT_MS:
        problems["timeout_ms"] = f"From {MIN_TIMEOUT_MS} to {MAX_TIMEOUT_MS:,} milliseconds."
    if not 0 <= fields.position <= MAX_POSITION:
        problems["position"] = f"From 0 to {MAX_POSITION:,}."
    if fields.judge is not None and fields.judge.project_id != project.pk:
        problems["judge"] = "The judge endpoint must be one of this project's."
    return problems


def _deployment_problem(*, project: Project, deployment: Deployment) -> str:
    if deployment.project_id != project.pk:
        return "The deployment must be one of this project's."
    if deployment.status not in LIVE_DEPLOYMENT:
        return f"Deployment {deployment.served_name} is {deployment.status}: only a live deployment takes calls."
    return ""


def _described(route: ProxyRoute) -> dict:
    return {"route": route.pk, "name": route.name, "deployment": route.deployment.served_name, "mode": route.mode,
            "share": route.share, "active": route.active}  # fmt: skip


def _audited_value(value: object) -> object:
    return value.pk if isinstance(value, ModelEndpoint) else value


def route_create(
    *, project: Project, name: str, deployment: Deployment, mode: str = RouteMode.SHADOW,
    fields: RouteFields | None = None, actor: User | None = None, api_key: ApiKey | None = None,
) -> ProxyRoute:  # fmt: skip
    """A route to a live deployment of the project. Raises ValidationError naming the field."""
    fields = fields or RouteFields()
    problems = route_problems(project=project, fields=fields)
    name = name.strip()
    if not _NAME.match(name):
        problems["name"] = (
            "1 to 64 lowercase letters, digits, dashes and underscores, starting with a letter or digit."
        )
    if mode not in RouteMode.values:
        problems["mode"] = f"One of {', '.join(RouteMode.values)}."
    if problem := _deployment_problem(project=project, deployment=deployment):
        problems["deployment"] = problem
    if problems:
        raise ValidationError(problems)
    values = {name: getattr(fields, name) for name in RouteFields.__dataclass_fields__}
    if values["share"] is None:
        values["share"] = 1.0 if mode == RouteMode.SHADOW else SHARE_STEPS[0]
    route = ProxyRoute(project=project, name=name, deployment=deployment, mode=mode, created_by=actor, **values)
    try:
        with transaction.atomic():
            route.save()
            audit_record(
                project=project, action="route.create", actor=actor, api_key=api_key,
                detail=_described(route) | {name: _audited_value(values[name]) for name in values},
            )  # fmt: skip
    except IntegrityError:
        raise ValidationError({"name": f"The project has a route named {name} already."}) from None
    return route


@transaction.atomic
def route_update(
    *, route: ProxyRoute, fields: RouteFields, actor: User | None = None, api_key: ApiKey | None = None
) -> ProxyRoute:
    """Change what the route matches, its share, timeout, checks, judge and position (audited with each value changed,
    from and to). The share of a route rolled back stays 0 until it is promoted again."""
    problems = route_problems(project=route.project, fields=fields)
    if problems:
        raise ValidationError(problems)
    route = ProxyRoute.objects.select_for_update().select_related("deployment", "project").get(pk=route.pk)
    if fields.share is None:
        fields.share = route.share
    changed = {}
    for name in RouteFields.__dataclass_fields__:
        before, after = getattr(route, name), getattr(fields, name)
        if before != after:
            changed[name] = {"from": _audited_value(before), "to": _audited_value(after)}
            setattr(route, name, after)
    if not changed:
        return route
    route.updated_at = timezone.now()
    route.save()
    audit_record(project=route.project, action="route.update", actor=actor, api_key=api_key,
                 detail={"route": route.pk, "name": route.name, "changed": changed})  # fmt: skip
    return route


@transaction.atomic
def route_promote(
    *, route: ProxyRoute, share: float | None = None, actor: User | None = None, api_key: ApiKey | None = None
) -> ProxyRoute:
    """Send more calls to the fine-tune. A canary goes to the next step of 1%, 5%, 10%, 25%, 50%, 100% above its
    share, or to `share` (higher than now); a shadow route becomes a canary at `share` (1% when not given). A route
    rolled back is active again from its new share. Audited as `route.promote`, from and to."""
    route = ProxyRoute.objects.select_for_update().select_related("deployment", "project").get(pk=route.pk)
    if problem := _deployment_problem(project=route.project, deployment=route.deployment):
        raise ValidationError({"deployment": problem})
    if share is not None and not 0 < share <= 1:
        raise ValidationError({"share": "A share above 0, up to 1."})
    current = route.share if route.active and route.mode == RouteMode.CANARY else 0.0
    if share is None:
        share = next_share(current)
        if share is None:
            raise ValidationError({"share": "The fine-tune answers every matching call already."})
    elif share <= current:
        raise ValidationError(
            {"share": f"Promoting raises the share above {current:.0%}: lower it with a change, or roll back."}
        )
    before = {"mode": route.mode, "share": route.share, "active": route.active}
    route.mode, route.share, route.active, route.updated_at = RouteMode.CANARY, share, True, timezone.now()
    route.save(update_fields=["mode", "share", "active", "updated_at"])
    after = {"mode": route.mode, "share": route.share, "active": route.active}
    audit_record(
        project=route.project, action="route.promote", actor=actor, api_key=api_key,
        detail={"route": route.pk, "name": route.name,
                "changed": {k: {"from": before[k], "to": after[k]} for k in before if before[k] != after[k]}},
    )  # fmt: skip
    return route


@transaction.atomic
def route_rollback(*, route: ProxyRoute, actor: User | None = None, api_key: ApiKey | None = None) -> ProxyRoute:
    """Every call the route matched goes to the provider only, from the next call on: share 0 and inactive (audited
    as `route.rollback` with what it was). Rolling back again changes nothing."""
    route = ProxyRoute.objects.select_for_update().select_related("project").get(pk=route.pk)
    if not route.active and route.share == 0:
        return route
    before = {"share": route.share, "active": route.active, "mode": route.mode}
    route.share, route.active, route.updated_at = 0.0, False, timezone.now()
    route.save(update_fields=["share", "active", "updated_at"])
    audit_record(
        project=route.project, action="route.rollback", actor=actor, api_key=api_key,
        detail={"route": route.pk, "name": route.name, "mode": route.mode,
                "changed": {"share": {"from": before["share"], "to": 0.0}, "active": {"from": before["active"],
                                                                                      "to": False}}},
    )  # fmt: skip
    return route


@transaction.atomic
def route_delete(*, route: ProxyRoute, actor: User | None = None, api_key: ApiKey | None = None) -> None:
    """Remove the route and the record of its calls (their logs stay)."""
    audit_record(project=route.project, action="route.delete", actor=actor, api_key=api_key,
                 detail=_described(route) | {"calls": route.calls.count()})  # fmt: skip
    route.delete()
