"""Proxy routes: adding, changing and removing them, promoting a canary through its steps, rolling back, what is
refused; a route's figures worked out against the RouteCall rows (latency percentiles, cost saved, the share the
fine-tune answered and the judge's win rate with their intervals), on PostgreSQL and as SQLite computes them; judging
shadow pairs with a stand-in judge; and the Serving and route pages for each persona."""

import math
from datetime import timedelta
from decimal import Decimal

import numpy as np
import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from curation.logs.services import logs_ingest
from curation.models import AuditEvent, LogEntry, Role
from curation.projects.services import api_key_create
from tests.chat_stand_in import start_chat_stand_in
from tests.factories import (
    DatasetFactory,
    DeploymentFactory,
    FineTuneJobFactory,
    ModelEndpointFactory,
    ProjectFactory,
    ProxyRouteFactory,
    RouteCallFactory,
)
from training.endpoints.services import EndpointFields, endpoint_create
from training.evaluation.metrics import wilson_interval, win_rate
from training.models import DeploymentStatus, ProxyRoute, RouteCall, RouteMode, Side
from training.serving.routes import judging, selectors
from training.serving.routes.judging import in_judge_sample, route_call_judge_maybe, route_pairs_judge
from training.serving.routes.selectors import next_share, route_series, route_stats
from training.serving.routes.services import route_promote, route_rollback

pytestmark = pytest.mark.django_db


def keyed(project, role: str = Role.EDITOR) -> APIClient:
    return APIClient(HTTP_AUTHORIZATION=f"Bearer {api_key_create(project=project, name=role, role=role)[1]}")


@pytest.fixture
def deployment(project):
    job = FineTuneJobFactory(dataset=DatasetFactory(project=project), status="succeeded")
    return DeploymentFactory(job=job, name="support", serving=True)


# --- Writes -------------------------------------------------------------------------------------------------------


def test_an_editors_key_adds_lists_changes_and_removes_a_route_each_audited(project, deployment):
    api = keyed(project)

    shadow = api.post("/api/v1/routes", {"name": "support", "deployment": deployment.pk,
                                         "match_model": "gpt-4o-mini"}, format="json")  # fmt: skip
    canary = api.post("/api/v1/routes", {"name": "checkout", "deployment": deployment.pk, "mode": "canary",
                                         "match_metadata_key": "feature", "match_metadata_value": "checkout"},
                      format="json")  # fmt: skip
    changed = api.patch(f"/api/v1/routes/{shadow.json()['id']}", {"share": 0.25, "match_route": "faq"}, format="json")
    listed = keyed(project, Role.VIEWER).get("/api/v1/routes").json()["results"]
    removed = api.delete(f"/api/v1/routes/{canary.json()['id']}")

    assert (shadow.status_code, canary.status_code, changed.status_code, removed.status_code) == (201, 201, 200, 204)
    assert (shadow.json()["mode"], shadow.json()["share"], shadow.json()["model"]) == (
        "shadow",
        1.0,
        "ft:acme/support",
    )
    assert (canary.json()["share"], canary.json()["next_share"]) == (0.01, 0.05)  # a canary starts at the first step
    assert (changed.json()["share"], changed.json()["match_route"], changed.json()["match_model"]) == (
        0.25, "faq", "gpt-4o-mini"
    )  # fmt: skip
    assert [r["name"] for r in listed] == ["checkout", "support"]
    assert list(ProxyRoute.objects.values_list("name", flat=True)) == ["support"]
    update = AuditEvent.objects.get(action="route.update")
    assert update.detail["changed"] == {"match_route": {"from": "", "to": "faq"}, "share": {"from": 1.0, "to": 0.25}}
    assert update.api_key is not None
    assert [e.action for e in AuditEvent.objects.filter(action__startswith="route.").order_by("id")] == [
        "route.create", "route.create", "route.update", "route.delete"
    ]  # fmt: skip


def test_what_a_route_is_refused(project, deployment, outsider):
    api = keyed(project)
    stopped = DeploymentFactory(job=deployment.job, name="old", status=DeploymentStatus.STOPPED)
    foreign = DeploymentFactory(job=FineTuneJobFactory(dataset=DatasetFactory(project=ProjectFactory())))
    foreign_judge = ModelEndpointFactory(project=foreign.project)
    api.post("/api/v1/routes", {"name": "taken", "deployment": deployment.pk}, format="json")

    def refused(**body: object) -> list[str]:
        answer = api.post("/api/v1/routes", {"name": "fresh", "deployment": deployment.pk, **body}, format="json")
        assert answer.status_code == 400, answer.content
        return sorted(answer.json())

    assert refused(deployment=stopped.pk) == ["deployment"]
    assert refused(deployment=foreign.pk) == ["deployment"]
    assert refused(name="taken") == ["name"]
    assert refused(name="Not a slug!") == ["name"]
    assert refused(share=1.5) == ["share"]
    assert refused(match_metadata_value="checkout") == ["match_metadata_value"]
    assert refused(judge=foreign_judge.pk) == ["judge"]
    assert refused(timeout_ms=5) == ["timeout_ms"]
    assert keyed(project, Role.VIEWER).post("/api/v1/routes", {}, format="json").status_code == 403
    assert ProxyRoute.objects.count() == 1


def test_a_canary_is_promoted_step_by_step_to_every_call(project, deployment, editor):
    route = ProxyRouteFactory(deployment=deployment, mode=RouteMode.CANARY, share=0.01)
    shares = []
    for _ in range(5):
        shares.append(route_promote(route=route, actor=editor).share)

    assert shares == [0.05, 0.10, 0.25, 0.50, 1.0]
    with pytest.raises(Exception, match="every matching call already"):
        route_promote(route=route, actor=editor)
    events = AuditEvent.objects.filter(action="route.promote").order_by("id")
    assert [e.detail["changed"]["share"] for e in events][:2] == [
        {"from": 0.01, "to": 0.05},
        {"from": 0.05, "to": 0.1},
    ]


def test_a_shadow_route_becomes_a_canary_and_a_share_below_the_current_one_is_refused(project, deployment):
    api = keyed(project)
    first = ProxyRouteFactory(deployment=deployment, name="first")
    second = ProxyRouteFactory(deployment=deployment, name="second")

    at_one = api.post(f"/api/v1/routes/{first.pk}/promote", {}, format="json").json()
    at_twenty = api.post(f"/api/v1/routes/{second.pk}/promote", {"share": 0.2}, format="json").json()
    lower = api.post(f"/api/v1/routes/{second.pk}/promote", {"share": 0.1}, format="json")

    assert (at_one["mode"], at_one["share"]) == ("canary", 0.01)
    assert (at_twenty["mode"], at_twenty["share"], at_twenty["next_share"]) == ("canary", 0.2, 0.25)
    assert lower.status_code == 400 and list(lower.json()) == ["share"]
    event = AuditEvent.objects.filter(action="route.promote").first()
    assert event.detail["changed"]["mode"] == {"from": "shadow", "to": "canary"}


def test_a_rollback_sends_every_call_to_the_provider_and_a_promotion_starts_again_at_one_percent(project, deployment):
    route = ProxyRouteFactory(deployment=deployment, mode=RouteMode.CANARY, share=0.5)
    api = keyed(project)

    rolled = api.post(f"/api/v1/routes/{route.pk}/rollback").json()
    api.post(f"/api/v1/routes/{route.pk}/rollback")  # again: nothing changes
    again = route_promote(route=route)

    assert (rolled["share"], rolled["active"], rolled["next_share"]) == (0.0, False, 0.01)
    assert (again.share, again.active) == (0.01, True)
    events = AuditEvent.objects.filter(action="route.rollback")
    assert [e.detail["changed"] for e in events] == [
        {"share": {"from": 0.5, "to": 0.0}, "active": {"from": True, "to": False}}
    ]


def test_a_route_to_a_deployment_that_no_longer_serves_is_not_promoted(project, deployment):
    route = ProxyRouteFactory(deployment=deployment, mode=RouteMode.CANARY, share=0.05)
    route_rollback(route=route)
    deployment.status = DeploymentStatus.STOPPED
    deployment.save()

    answer = keyed(project).post(f"/api/v1/routes/{route.pk}/promote", {}, format="json")

    assert answer.status_code == 400 and "stopped" in answer.json()["deployment"][0]


def test_the_steps():
    assert [next_share(s) for s in (0, 0.01, 0.03, 0.05, 0.5, 0.99, 1.0)] == [0.01, 0.05, 0.05, 0.1, 1.0, 1.0, None]


# --- Figures ------------------------------------------------------------------------------------------------------

PROVIDER_MS = [120.0, 300.0, 310.0, 450.0, 800.0, 900.0, 1000.0, 1500.0, 2400.0, 5000.0]
FINETUNE_MS = [80.0, 95.0, 100.0, 150.0, 160.0, 170.0, 200.0, 220.0, 260.0, None]
VERDICTS = [1.0, 1.0, 0.5, 0.0, 1.0, None, None, None, None, None]


@pytest.fixture
def calls(deployment):
    """Ten calls of a canary: three answered by the fine-tune, two fallbacks, five shadow pairs judged."""
    route = ProxyRouteFactory(deployment=deployment, mode=RouteMode.CANARY, share=0.25)
    now = timezone.now()
    for i in range(10):
        served = Side.FINETUNE if i in (0, 1, 2) else Side.PROVIDER
        RouteCallFactory(
            route=route, mode=RouteMode.SHADOW if VERDICTS[i] is not None else RouteMode.CANARY, served_by=served,
            fallback={3: "timeout", 4: "json_invalid", 9: "timeout"}.get(i, ""), provider_ms=PROVIDER_MS[i],
            finetune_ms=FINETUNE_MS[i], verdict=VERDICTS[i], provider_model="gpt-4o-mini" if i != 2 else "unknown-x",
            finetune_prompt_tokens=1000 * (i + 1), finetune_completion_tokens=100 * (i + 1),
            created_at=now - timedelta(minutes=5 + 70 * (i % 2)),
        )  # fmt: skip
    return route


def expected_figures():
    finetune = [ms for ms in FINETUNE_MS if ms is not None]
    # gpt-4o-mini: $0.15 / $0.60 per million tokens; calls 0 and 1 (call 2's model has no price).
    cost = sum(Decimal(1000 * n) * Decimal("0.15") + Decimal(100 * n) * Decimal("0.6") for n in (1, 2)) / 10**6
    return {
        "provider": (np.percentile(PROVIDER_MS, 50), np.percentile(PROVIDER_MS, 95)),
        "finetune": (np.percentile(finetune, 50), np.percentile(finetune, 95)),
        "cost": cost,
    }


@pytest.mark.parametrize("where", ["postgresql", "python"])
def test_the_figures_match_the_calls(calls, where, monkeypatch):
    if where == "python":  # as on SQLite: the percentiles worked out over the rows
        monkeypatch.setattr(selectors, "_in_database", lambda: False)
    expected = expected_figures()

    stats = route_stats(route=calls)

    assert (stats.calls, stats.finetune_served, stats.fallbacks) == (10, 3, {"timeout": 2, "json_invalid": 1})
    assert (stats.provider.p50_ms, stats.provider.p95_ms) == pytest.approx(expected["provider"])
    assert (stats.finetune.p50_ms, stats.finetune.p95_ms) == pytest.approx(expected["finetune"])
    assert stats.finetune.prompt_tokens == 55_000 and stats.finetune.completion_tokens == 5_500
    assert stats.provider.prompt_tokens == 1000  # ten calls of 100, as the factory makes them
    assert (stats.cost_saved_usd, stats.unpriced_calls) == (expected["cost"], 1)
    share = stats.finetune_share
    assert (share.value, share.n) == (0.3, 10)
    assert (share.low, share.high) == pytest.approx((0.1078, 0.6032), abs=1e-4)  # Wilson's, for 3 of 10
    assert stats.win_rate == win_rate([1.0, 1.0, 0.5, 0.0, 1.0])
    assert (stats.win_rate.rate.value, stats.win_rate.rate.n, stats.judged) == (0.7, 5, 5)
    assert stats.win_rate.rate.low < 0.7 < stats.win_rate.rate.high


def test_the_figures_since_a_time_count_only_the_calls_from_then(calls):
    stats = route_stats(route=calls, since=timezone.now() - timedelta(minutes=30))

    assert (stats.calls, stats.finetune_served) == (5, 2)  # the even calls, five minutes ago


@pytest.mark.parametrize("where", ["postgresql", "python"])
def test_the_hourly_series(calls, where, monkeypatch):
    if where == "python":
        monkeypatch.setattr(selectors, "_in_database", lambda: False)

    points = route_series(route=calls, hours=24)

    assert [p.calls for p in points] == [5, 5] and sum(p.fallbacks for p in points) == 3
    odd = [PROVIDER_MS[i] for i in range(1, 10, 2)]
    assert points[0].provider_p50_ms == pytest.approx(np.percentile(odd, 50))


def test_the_wilson_interval_holds_at_the_edges():
    assert wilson_interval(0, 0) is None
    none, every = wilson_interval(0, 20), wilson_interval(20, 20)
    assert (none.low, every.high) == (0.0, 1.0) and none.high > 0 and every.low < 1
    assert math.isclose(wilson_interval(50, 100).low, 0.4038, abs_tol=1e-4)


# --- Judging shadow pairs -----------------------------------------------------------------------------------------


def prefers_blue(body: dict) -> str:
    text = body["messages"][-1]["content"]
    a = text.split("<answer_a>")[1].split("</answer_a>")[0]
    return "Verdict: A" if "blue" in a else "Verdict: B"


@pytest.fixture
def judge(project, settings):
    settings.LOGTUNE_ENDPOINT_HOSTS = ["127.0.0.1:*"]
    server = start_chat_stand_in(answer=prefers_blue)
    endpoint = endpoint_create(project=project, fields=EndpointFields("judge", server.url, "judge-model"))
    yield server, endpoint
    server.close()


def shadow_pair(route, n: int, *, ours: str = "The sky is blue.", theirs: str = "It is grey.") -> RouteCall:
    question = [{"role": "user", "content": f"What colour is the sky? ({n})"}]
    logs_ingest(project=route.project, items=[
        {"messages": [*question, {"role": "assistant", "content": theirs}], "external_id": f"p-{n}"},
        {"messages": [*question, {"role": "assistant", "content": ours}], "external_id": f"f-{n}"},
    ])  # fmt: skip
    return RouteCallFactory(route=route, mode=RouteMode.SHADOW, provider_log=f"p-{n}", finetune_log=f"f-{n}")


def test_a_sampled_shadow_pair_is_queued_once_committed_and_judged_in_both_orders(
    deployment, judge, monkeypatch, django_capture_on_commit_callbacks
):
    server, endpoint = judge
    route = ProxyRouteFactory(deployment=deployment, judge=endpoint, judge_sample=1.0)
    call = shadow_pair(route, 1)
    sent = []
    monkeypatch.setattr(judging.route_pairs_judge_task, "delay", sent.append)

    with django_capture_on_commit_callbacks(execute=True):
        route_call_judge_maybe(call=call)
    judged = route_pairs_judge(call_id=call.pk)
    again = route_pairs_judge(call_id=call.pk)  # a redelivered task: judged already

    call.refresh_from_db()
    assert sent == [call.pk] and (judged, again) == (1, 0)
    assert call.verdict == 1.0 and call.judged_at is not None
    assert len(server.requests) == 2  # both orders
    assert "What colour is the sky? (1)" in server.requests[0]["messages"][-1]["content"]


def test_pairs_outside_the_sample_or_without_a_judge_are_not_queued(deployment, judge, monkeypatch):
    _, endpoint = judge
    sent = []
    monkeypatch.setattr(judging.route_pairs_judge_task, "delay", sent.append)
    unsampled = shadow_pair(ProxyRouteFactory(deployment=deployment, judge=endpoint, judge_sample=0.0), 1)
    unjudged = shadow_pair(ProxyRouteFactory(deployment=deployment, judge_sample=1.0), 2)

    route_call_judge_maybe(call=unsampled)
    route_call_judge_maybe(call=unjudged)

    assert sent == []


def test_one_task_judges_the_waiting_pairs_of_its_route_together(deployment, judge):
    server, endpoint = judge
    route = ProxyRouteFactory(deployment=deployment, judge=endpoint, judge_sample=1.0)
    blue, grey = "The sky is blue.", "It is grey."
    pairs = [shadow_pair(route, n, ours=blue if n % 2 else grey, theirs=grey if n % 2 else blue) for n in range(4)]

    judged = route_pairs_judge(call_id=pairs[-1].pk)

    assert judged == 4 and len(server.requests) == 8
    assert [RouteCall.objects.get(pk=p.pk).verdict for p in pairs] == [0.0, 1.0, 0.0, 1.0]
    assert route_stats(route=route).win_rate.rate.value == 0.5


def test_a_failed_judge_call_or_a_missing_log_leaves_the_pair_unjudged(deployment, judge, caplog):
    server, endpoint = judge
    failing = shadow_pair(ProxyRouteFactory(deployment=deployment, judge=endpoint, judge_sample=1.0), 1)
    server.failures = [400, 400]  # not retried
    other_route = ProxyRouteFactory(deployment=deployment, judge=endpoint, judge_sample=1.0)
    missing = RouteCallFactory(route=other_route, mode=RouteMode.SHADOW, provider_log="gone", finetune_log="gone-too")

    assert route_pairs_judge(call_id=failing.pk) == 0
    assert route_pairs_judge(call_id=missing.pk) == 0

    assert RouteCall.objects.filter(verdict__isnull=False).count() == 0
    assert "serving.route_judge_failed" in caplog.text and "serving.route_pair_unjudgeable" in caplog.text
    assert LogEntry.objects.count() == 2


def test_the_sample_is_decided_by_the_call_id_alone():
    picks = [in_judge_sample(call_id=i, share=0.3) for i in range(2000)]

    assert picks == [in_judge_sample(call_id=i, share=0.3) for i in range(2000)]
    assert 0.26 < sum(picks) / 2000 < 0.34
    assert not any(in_judge_sample(call_id=i, share=0.0) for i in range(100))
    assert all(in_judge_sample(call_id=i, share=1.0) for i in range(100))


# --- Pages --------------------------------------------------------------------------------------------------------


def test_the_serving_page_shows_deployments_and_routes_to_members_only(client, project, viewer, outsider, calls):
    client.force_login(viewer)
    shown = client.get("/p/acme/serving/")
    client.force_login(outsider)

    body = shown.content.decode()
    assert shown.status_code == 200 and "ft:acme/support" in body and calls.name in body
    assert f"/p/acme/serving/routes/{calls.pk}/" in body and "route-form" not in body  # a viewer adds no route
    assert client.get("/p/acme/serving/").status_code == 404
    assert client.post("/p/acme/serving/", {"name": "x"}).status_code == 404


def test_an_editor_adds_a_route_from_the_serving_page_and_a_viewer_may_not(
    client, project, editor, viewer, deployment
):
    form = {"name": "faq", "deployment": deployment.pk, "mode": "canary", "share": "5", "timeout_ms": "2000",
            "check_json": "on", "judge_sample": "10", "position": "0"}  # fmt: skip
    client.force_login(viewer)
    refused = client.post("/p/acme/serving/", form)
    client.force_login(editor)
    added = client.post("/p/acme/serving/", form)
    twice = client.post("/p/acme/serving/", form)

    route = ProxyRoute.objects.get()
    assert refused.status_code == 403
    assert added.status_code == 302 and added["Location"] == f"/p/acme/serving/routes/{route.pk}/"
    assert (route.mode, route.share, route.timeout_ms, route.check_json, route.check_tools) == (
        "canary", 0.05, 2000, True, False
    )  # fmt: skip
    assert twice.status_code == 400 and "already" in twice.content.decode()


def test_the_route_page_shows_the_figures_and_links_each_call_to_its_logs(client, project, viewer, calls):
    logs_ingest(project=project, items=[{"prompt": "q", "completion": "a", "external_id": "known"}])
    RouteCall.objects.filter(pk=RouteCall.objects.filter(route=calls).first().pk).update(provider_log="known")
    log = LogEntry.objects.get(external_id="known")
    client.force_login(viewer)

    body = client.get(f"/p/acme/serving/routes/{calls.pk}/?window=all").content.decode()

    assert f'href="/p/acme/logs/{log.pk}/"' in body
    assert "0.300 [0.108, 0.603]" in body and "timeout" in body and "json_invalid" in body
    assert "0.700" in body and "n=5" in body  # the judge's win rate
    assert 'data-lines="route-counts"' in body and "Promote to" not in body  # a viewer sees no button


def test_an_editor_promotes_and_rolls_back_from_the_route_page_with_htmx(client, project, editor, viewer, calls):
    client.force_login(viewer)
    refused = client.post(f"/p/acme/serving/routes/{calls.pk}/promote")
    client.force_login(editor)
    page = client.get(f"/p/acme/serving/routes/{calls.pk}/").content.decode()
    promoted = client.post(f"/p/acme/serving/routes/{calls.pk}/promote", HTTP_HX_REQUEST="true")
    rolled = client.post(f"/p/acme/serving/routes/{calls.pk}/rollback")

    calls.refresh_from_db()
    assert refused.status_code == 403
    assert "Promote to 50%" in page and "Roll back" in page
    assert promoted.status_code == 200 and 'id="route-state"' in promoted.content.decode()
    assert "50%" in promoted.content.decode() and "<html" not in promoted.content.decode()
    assert rolled.status_code == 302 and (calls.share, calls.active) == (0.0, False)
    assert [e.actor for e in AuditEvent.objects.filter(action__in=["route.promote", "route.rollback"])] == [editor] * 2
