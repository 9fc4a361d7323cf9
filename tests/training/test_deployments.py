"""Deploying a fine-tune: past the promotion gate, refused by it with its reasons, forced past it by an owner with a
reason (never by an editor, nor by an API key); stopping, refused while an active route sends calls; the audit; the
weights kept while deployed; and the fine-tune page's Deploy section for each persona."""

import pytest
from rest_framework.test import APIClient

from curation.models import AuditEvent, Role
from curation.projects.services import api_key_create
from tests.factories import DatasetFactory, EvaluationRunFactory, FineTuneJobFactory, ProxyRouteFactory
from training.evaluation.promotion.selectors import promotion_rule_get
from training.finetunes.deletion import FineTuneBusy, finetune_weights_delete
from training.models import Deployment, DeploymentStatus, FineTuneJob, FineTuneStatus

pytestmark = pytest.mark.django_db

FAILED_CHECK = {"name": "teacher_win_rate", "passed": False, "reason": "Win rate against the teacher 0.30 < 0.50"}


def keyed(project, role: str) -> APIClient:
    return APIClient(HTTP_AUTHORIZATION=f"Bearer {api_key_create(project=project, name=role, role=role)[1]}")


def succeeded(project, *, passed: bool | None) -> FineTuneJob:
    """A succeeded fine-tune whose latest evaluation passed the gate (True), failed it (False), or that has none."""
    job = FineTuneJobFactory(dataset=DatasetFactory(project=project), status=FineTuneStatus.SUCCEEDED)
    if passed is not None:
        rule = promotion_rule_get(project=project).gate_rule.as_dict()
        checks = [] if passed else [FAILED_CHECK]
        EvaluationRunFactory(job=job, finished=True, results={"gate": {"passed": passed, "checks": checks,
                                                                       "rule": rule}})  # fmt: skip
    return job


def test_an_editor_deploys_a_fine_tune_that_passed_the_gate(project, editor):
    job = succeeded(project, passed=True)

    answer = keyed(project, Role.EDITOR).post("/api/v1/deployments", {"finetune": job.pk}, format="json")

    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert (body["model"], body["status"], body["forced"], body["finetune"]) == (
        f"ft:acme/ft-{job.pk}", "pending", False, job.pk
    )  # fmt: skip
    event = AuditEvent.objects.get(action="deployment.create")
    assert (event.detail["gate_passed"], event.detail["forced"], event.api_key is not None) == (True, False, True)
    listed = keyed(project, Role.VIEWER).get("/api/v1/deployments").json()["results"]
    assert [d["id"] for d in listed] == [body["id"]]


def test_the_gate_refuses_a_fine_tune_that_failed_it_naming_the_reasons(project, editor, client_for):
    failed, unevaluated = succeeded(project, passed=False), succeeded(project, passed=None)

    refused = client_for(editor).post("/api/v1/deployments?project=acme", {"finetune": failed.pk}, format="json")
    none = client_for(editor).post("/api/v1/deployments?project=acme", {"finetune": unevaluated.pk}, format="json")

    assert refused.status_code == 400 and "Win rate against the teacher 0.30 < 0.50" in refused.json()["gate"][0]
    assert none.status_code == 400 and "no evaluation with a verdict" in none.json()["gate"][0]
    assert not Deployment.objects.exists() and not AuditEvent.objects.filter(action="deployment.create").exists()


def test_an_owner_forces_a_fine_tune_past_the_gate_with_a_reason(project, owner, client_for):
    job = succeeded(project, passed=False)
    api = client_for(owner)

    without = api.post("/api/v1/deployments?project=acme", {"finetune": job.pk, "force": True}, format="json")
    forced = api.post("/api/v1/deployments?project=acme",
                      {"finetune": job.pk, "force": True, "reason": "hotfix for the checkout", "name": "checkout"},
                      format="json")  # fmt: skip

    assert without.status_code == 400 and list(without.json()) == ["reason"]
    assert forced.status_code == 201, forced.content
    assert (forced.json()["model"], forced.json()["forced"], forced.json()["reason"]) == (
        "ft:acme/checkout", True, "hotfix for the checkout"
    )  # fmt: skip
    event = AuditEvent.objects.get(action="deployment.create")
    assert (event.actor, event.detail["forced"], event.detail["reason"]) == (owner, True, "hotfix for the checkout")


def test_neither_an_editor_nor_an_api_key_may_force(project, owner, editor, client_for):
    job = succeeded(project, passed=False)
    body = {"finetune": job.pk, "force": True, "reason": "because"}

    by_editor = client_for(editor).post("/api/v1/deployments?project=acme", body, format="json")
    by_owner_key = keyed(project, Role.OWNER).post("/api/v1/deployments", body, format="json")

    assert (by_editor.status_code, by_owner_key.status_code) == (403, 403)
    assert not Deployment.objects.exists()


def test_stopping_is_refused_while_an_active_route_sends_calls_then_audited(project, editor):
    job = succeeded(project, passed=True)
    api = keyed(project, Role.EDITOR)
    deployment = api.post("/api/v1/deployments", {"finetune": job.pk}, format="json").json()
    route = ProxyRouteFactory(deployment_id=deployment["id"], project=project, name="checkout")

    refused = api.post(f"/api/v1/deployments/{deployment['id']}/stop")
    api.post(f"/api/v1/routes/{route.pk}/rollback")
    stopped = api.post(f"/api/v1/deployments/{deployment['id']}/stop")
    again = api.post(f"/api/v1/deployments/{deployment['id']}/stop")

    assert refused.status_code == 400 and "checkout" in refused.json()["routes"][0]
    assert stopped.status_code == 200 and stopped.json()["status"] == "stopped" and stopped.json()["stopped_by"]
    assert again.status_code == 200
    assert AuditEvent.objects.filter(action="deployment.stop").count() == 1


def test_a_deployed_fine_tunes_weights_are_kept_until_it_is_stopped(project, editor):
    job = succeeded(project, passed=True)
    api = keyed(project, Role.EDITOR)
    deployment = api.post("/api/v1/deployments", {"finetune": job.pk}, format="json").json()

    with pytest.raises(FineTuneBusy, match="stop the deployment first"):
        finetune_weights_delete(job=job)
    refused = api.delete(f"/api/v1/finetunes/{job.pk}/weights")
    api.post(f"/api/v1/deployments/{deployment['id']}/stop")
    finetune_weights_delete(job=job)

    assert refused.status_code == 409
    job.refresh_from_db()
    assert job.weights_deleted_at is not None


def test_another_projects_fine_tune_or_one_still_training_is_refused_naming_it(project, editor, outsider):
    foreign = succeeded(outsider.memberships.get().project, passed=True)
    training = FineTuneJobFactory(dataset=DatasetFactory(project=project), status=FineTuneStatus.RUNNING)
    api = keyed(project, Role.EDITOR)

    not_found = api.post("/api/v1/deployments", {"finetune": foreign.pk}, format="json")
    not_yet = api.post("/api/v1/deployments", {"finetune": training.pk}, format="json")

    assert not_found.status_code == 400 and "not found" in not_found.json()["finetune"][0]
    assert not_yet.status_code == 400 and "succeeded fine-tune" in not_yet.json()["finetune"][0]


# --- The fine-tune page's Deploy section --------------------------------------------------------------------------


def page(client, job):
    return client.get(f"/p/acme/finetunes/{job.pk}/")


def test_the_deploy_section_offers_each_persona_what_it_may_do(client, project, owner, editor, viewer, outsider):
    job = succeeded(project, passed=False)

    client.force_login(owner)
    as_owner = page(client, job).content.decode()
    client.force_login(editor)
    as_editor = page(client, job).content.decode()
    client.force_login(viewer)
    as_viewer = page(client, job).content.decode()
    client.force_login(outsider)

    assert "Deploy anyway" in as_owner and "Win rate against the teacher 0.30 &lt; 0.50" in as_owner
    assert "Deploy anyway" not in as_editor and "Only an owner can deploy" in as_editor
    assert "deploy-form" not in as_viewer and "Deploying needs the editor role" in as_viewer
    assert page(client, job).status_code == 404


def test_an_owner_deploys_anyway_from_the_page_and_an_editor_may_not(client, project, owner, editor):
    job = succeeded(project, passed=None)
    url = f"/p/acme/finetunes/{job.pk}/deploy"

    client.force_login(editor)
    refused = client.post(url, {"name": "", "force": "on", "reason": "try it"})
    client.force_login(owner)
    deployed = client.post(url, {"name": "", "force": "on", "reason": "try it"})
    shown = page(client, job).content.decode()

    assert refused.status_code == 403
    assert deployed.status_code == 302 and deployed["Location"].endswith(f"/finetunes/{job.pk}/#deploy")
    deployment = Deployment.objects.get()
    assert (deployment.forced, deployment.reason, deployment.created_by) == (True, "try it", owner)
    assert f'model="ft:acme/ft-{job.pk}"' in shown and "/proxy/openai/v1" in shown
    assert f"/p/acme/deployments/{deployment.pk}/stop" in shown
    assert 'hx-trigger="every 3s"' in shown  # polled while a model server loads it


def test_an_editor_deploys_from_the_page_and_stops_it(client, project, editor):
    job = succeeded(project, passed=True)
    client.force_login(editor)

    client.post(f"/p/acme/finetunes/{job.pk}/deploy", {"name": "support"})
    deployment = Deployment.objects.get()
    Deployment.objects.filter(pk=deployment.pk).update(status=DeploymentStatus.SERVING)
    shown = page(client, job).content.decode()
    panel = client.get(f"/p/acme/finetunes/{job.pk}/deployment").content.decode()
    stopped = client.post(f"/p/acme/deployments/{deployment.pk}/stop", {"from": "finetune"})

    assert "ft:acme/support" in shown and 'hx-trigger="every 3s"' not in shown
    assert 'id="deploy"' in panel and "Stop</button>" in panel
    assert stopped.status_code == 302 and stopped["Location"].endswith(f"/finetunes/{job.pk}/#deploy")
    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.STOPPED and deployment.stopped_by == editor
