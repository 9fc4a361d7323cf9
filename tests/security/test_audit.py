"""The audit log: every change made through the API (deletions, edits, tags, splits, exports, key changes,
fine-tunes) is recorded with who made it, the user or the key, and only owners read it (the page, and
`GET /api/v1/audit`)."""

import functools
import json
import re
from pathlib import Path

import numpy as np
import pytest
from django.db.models import Max
from rest_framework.test import APIClient

from curation.models import ApiKey, AuditEvent, Dataset, JobStatus, RedactionJob, Role, Tag
from curation.projects.services import api_key_create, api_key_revoke
from curation.text.embeddings import DIMENSION, vector_bytes
from tests.factories import DatasetEntryFactory, DatasetFactory, EntryEmbeddingFactory
from tests.security.tenants import Tenant, tenant_create
from training.evaluation.gate import GateRule
from training.evaluation.promotion.selectors import promotion_rule_get
from training.finetunes.services import finetune_create
from training.models import BaseModel, EvaluationRun, FineTuneJob, FineTuneStatus, ProxyRoute

pytestmark = pytest.mark.django_db

CHAT = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]


def keyed(project, role: str) -> APIClient:
    return APIClient(HTTP_AUTHORIZATION=f"Bearer {api_key_create(project=project, name=role, role=role)[1]}")


def test_what_editors_do_is_recorded_and_owners_read_it(project, owner, editor, base_model, client_for):
    dataset = DatasetFactory(project=project, name="Math")
    entries = DatasetEntryFactory.create_batch(3, dataset=dataset, messages=CHAT)
    by_editor, by_key = client_for(editor), keyed(project, "editor")

    by_editor.delete(f"/api/v1/datasets/{dataset.pk}/entries/{entries[0].pk}?project=acme")
    by_key.get(f"/api/v1/datasets/{dataset.pk}/export?format=alpaca")
    job = by_key.post("/api/v1/finetunes", {"dataset": dataset.pk, "base_model": "tiny"}, format="json").json()
    by_editor.post(f"/api/v1/finetunes/{job['id']}/cancel?project=acme")
    snapshot = by_editor.post(f"/api/v1/datasets/{dataset.pk}/snapshots?project=acme").json()
    by_editor.get(snapshot["download_url"])
    by_editor.delete(f"/api/v1/datasets/{dataset.pk}?project=acme")

    page = keyed(project, "owner").get("/api/v1/audit?limit=20").json()

    seen = [(e["action"], e["actor"], e["api_key"] is not None) for e in reversed(page["results"])]
    assert seen == [
        ("key.create", None, False),  # the editor's key, made outside a request
        ("entries.delete", "bob", False),
        ("dataset.export", None, True),
        ("dataset.snapshot", None, True),  # the fine-tune froze the dataset first
        ("finetune.start", None, True),
        ("finetune.cancel", "bob", False),
        ("dataset.snapshot", "bob", False),
        ("snapshot.download", "bob", False),
        ("dataset.delete", "bob", False),
        ("key.create", None, False),  # the owner's key reading this
    ]
    deleted = next(e for e in page["results"] if e["action"] == "dataset.delete")
    assert deleted["count"] == 2 and deleted["detail"]["name"] == "Math"


def test_the_audit_is_filtered_paged_and_refused_to_all_but_owners(project, owner, editor, client_for):
    for i in range(3):
        api_key_revoke(key=api_key_create(project=project, name=f"k{i}")[0], actor=owner)
    owner_key = keyed(project, "owner")

    first = owner_key.get("/api/v1/audit?action=key.revoke&limit=2").json()
    rest = owner_key.get(f"/api/v1/audit?action=key.revoke&limit=2&cursor={first['next_cursor']}").json()

    assert [e["detail"]["name"] for e in first["results"] + rest["results"]] == ["k2", "k1", "k0"]
    assert rest["next_cursor"] is None
    assert all(e["actor"] == "alice" for e in first["results"])
    assert owner_key.get("/api/v1/audit?limit=0").status_code == 400
    assert client_for(owner).get("/api/v1/audit?project=acme").status_code == 200
    assert client_for(editor).get("/api/v1/audit?project=acme").status_code == 403
    assert keyed(project, "editor").get("/api/v1/audit").status_code == 403


def test_deleting_a_dataset_a_fine_tunes_weights_and_the_fine_tune_is_recorded_with_what_went(
    project, owner, editor, base_model, client_for
):
    dataset = DatasetFactory(project=project, name="Math")
    DatasetEntryFactory(dataset=dataset, messages=CHAT)
    by_editor, by_key = client_for(editor), keyed(project, "editor")
    job = by_key.post("/api/v1/finetunes", {"dataset": dataset.pk, "base_model": "tiny"}, format="json").json()
    FineTuneJob.objects.filter(pk=job["id"]).update(status=FineTuneStatus.SUCCEEDED)

    by_editor.delete(f"/api/v1/datasets/{dataset.pk}?project=acme")
    by_key.delete(f"/api/v1/finetunes/{job['id']}/weights")
    by_editor.delete(f"/api/v1/finetunes/{job['id']}?project=acme")

    page = keyed(project, "owner").get("/api/v1/audit?limit=20")
    events = {e["action"]: e for e in page.json()["results"]}
    assert (events["dataset.delete"]["actor"], events["dataset.delete"]["detail"]["kept"]) == (
        "bob", {"finetunes": 1, "snapshots": 1}
    )  # fmt: skip
    assert events["finetune.weights_delete"]["api_key"] is not None
    assert events["finetune.weights_delete"]["detail"]["job_id"] == job["id"]
    deleted = events["finetune.delete"]
    assert (deleted["actor"], deleted["detail"]["dataset"], deleted["detail"]["dataset_id"]) == ("bob", "Math", None)
    assert deleted["detail"]["snapshot"] == job["snapshot"]  # its dataset was gone, and no other fine-tune used it


# --- Every change made through the API is audited, naming the user or the key -----------------------------------

# Unsafe operations that write no audit event, and why.
NOT_AUDITED = {
    "logs_ingest": "sending logs: the data coming in (each log records when it came), at up to 600 requests a minute",
    "otel_traces_export": "sending logs as OpenTelemetry spans, as POST /api/v1/logs, by the same rate limit",
    "imports_create": "sending logs as a file; the import job keeps who uploaded it, its progress and its line errors",
    "finetunes_estimate": "computes examples, tokens and steps for a form; changes nothing",
    "endpoints_check": "one tiny call to see that an endpoint answers; changes nothing",
    "finetune_evaluations_estimate": "computes the examples, answers, judge calls and cost of a run; changes nothing",
    "generation_jobs_estimate": "computes the calls, tokens and cost of a generation job; changes nothing",
    "documents_create": "a file upload (multipart, not the JSON bodies sent here): audited as documents.upload, "
    "tested in tests/training/test_generation_api.py",
}
# For every other unsafe operation: a body that makes it change something, and the audit events that change writes.
# "{name}" in a body is replaced by the id of that object of the project.
AUDITED: dict[str, tuple[dict | None, set[str]]] = {
    "datasets_create": ({"name": "Fresh"}, {"dataset.create"}),
    "datasets_update": ({"name": "Renamed", "description": "now described"}, {"dataset.update"}),
    "datasets_destroy": (None, {"dataset.delete"}),
    "dataset_embeddings_create": (None, {"entries.embed"}),
    "dataset_entries_add": ({"log_ids": ["{log}"]}, {"logs.dataset_add"}),
    "dataset_entry_update": (
        {
            "messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}],
            "split": "validation",
        },
        {"entries.update", "entries.split"},
    ),
    "dataset_entry_destroy": (None, {"entries.delete"}),
    "dataset_near_duplicates_keep_one": ({"dry_run": False, "threshold": 0.9}, {"entries.delete"}),
    "dataset_redact": ({"dry_run": False}, {"entries.redact"}),
    "datasets_snapshots_create": (None, {"dataset.snapshot"}),
    "dataset_split": ({"validation_ratio": 0.5, "seed": 1}, {"dataset.split"}),
    "dataset_pairs_from_edits": ({"name": "Pairs of edits"}, {"dataset.create", "entries.add_pairs"}),
    "finetune_evaluation_pairs": ({"name": "Pairs of votes"}, {"dataset.create", "entries.add_pairs"}),
    "finetunes_create": ({"dataset": "{dataset}", "base_model": "tiny"}, {"dataset.snapshot", "finetune.start"}),
    "finetunes_destroy": (None, {"finetune.delete"}),
    "finetunes_cancel": (None, {"finetune.cancel"}),
    "finetunes_generate": ({"messages": [{"role": "user", "content": "2+2?"}]}, {"finetune.generate"}),
    "finetunes_merge": (None, {"finetune.merge"}),
    "finetunes_gguf": (None, {"finetune.gguf"}),
    "finetunes_weights_destroy": (None, {"finetune.weights_delete"}),
    "log_embeddings_create": (None, {"logs.embed"}),
    "topic_jobs_create": ({"k": 3}, {"topics.compute"}),
    "logs_update": ({"tags_add": ["seen"], "metadata": {"env": "test"}}, {"logs.update"}),
    "logs_destroy": (None, {"logs.delete"}),
    "logs_scores_create": ({"name": "thumbs", "value": "up"}, {"logs.score_add"}),
    "logs_scores_destroy": (None, {"logs.score_delete"}),
    "logs_bulk": ({"action": "tag_add", "tags": ["seen"], "log_ids": ["{log}"]}, {"logs.tag_add"}),
    "tags_update": ({"name": "renamed", "color": "#123456"}, {"tag.rename", "tag.recolour"}),
    "tags_destroy": (None, {"tag.delete"}),
    "tags_merge": ({"into": "{other_tag}"}, {"tag.merge"}),
    "endpoints_create": (
        {"name": "judge", "base_url": "https://api.openai.com/v1", "model": "gpt-4o", "api_key": "sk-1"},
        {"endpoints.create"},
    ),
    "endpoints_update": ({"model": "gpt-4o-mini", "api_key": "sk-2"}, {"endpoints.update"}),
    "endpoints_destroy": (None, {"endpoints.delete"}),
    "finetune_evaluations_create": ({"max_examples": 5}, {"finetune.evaluate"}),
    "finetune_evaluations_cancel": (None, {"finetune.evaluation_cancel"}),
    "regression_sets_create": ({"dataset": "{dataset}"}, {"evaluation.regression_set_pin"}),
    "regression_sets_destroy": (None, {"evaluation.regression_set_unpin"}),
    "finetune_evaluation_votes_create": (
        {"example": 0, "comparison": "teacher", "outcome": "tuned"},
        {"finetune.evaluation_vote"},
    ),
    "promotion_rule_update": (GateRule(min_teacher_win_rate=0.5).as_dict(), {"promotion_rule.update"}),
    "deployments_create": ({"finetune": "{finetune}", "name": "fresh"}, {"deployment.create"}),
    "deployments_stop": (None, {"deployment.stop"}),
    "routes_create": ({"name": "fresh", "deployment": "{deployment}", "mode": "shadow"}, {"route.create"}),
    "routes_update": ({"share": 0.1, "match_model": "gpt-4o"}, {"route.update"}),
    "routes_destroy": (None, {"route.delete"}),
    "routes_promote": ({}, {"route.promote"}),
    "routes_rollback": (None, {"route.rollback"}),
    "documents_destroy": (None, {"documents.delete"}),
    "generation_jobs_create": (
        {"kind": "documents", "endpoint_id": "{endpoint}", "dataset_id": "{dataset}", "document_ids": ["{document}"]},
        {"generation.create"},
    ),
    "generation_jobs_cancel": (None, {"generation.cancel"}),
    "generation_jobs_accept": ({"expected": 2}, {"generation.accept_bulk", "entries.add_synthetic"}),
    "generation_rows_update": (
        {"messages": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A fine answer."}]},
        {"generation.row_update"},
    ),
    "generation_rows_accept": ({}, {"generation.accept", "entries.add_synthetic"}),
    "generation_rows_reject": (None, {"generation.reject"}),
}
# Operations only an owner may make (the others are made by an editor).
BY_OWNER = {"endpoints_create", "endpoints_update", "endpoints_destroy", "promotion_rule_update"}
# Operations only a person may make (tenants.PERSONS_ONLY): a key is refused, and nothing is written.
BY_PERSON = {"finetune_evaluation_votes_create"}
# The fine-tune a path names: a queued one for cancelling (a succeeded one has nothing to cancel).
PATH_OBJECTS = {
    "log_id": "log", "dataset_id": "dataset", "entry_id": "entry", "tag_id": "tag", "job_id": "finetune",
    "endpoint_id": "endpoint", "evaluation_id": "evaluation",
    "score_id": "score", "set_id": "regression_set", "deployment_id": "deployment", "route_id": "route",
    "document_id": "document", "generation_job_id": "generation_job", "row_id": "generation_row",
}  # fmt: skip
PATH_OVERRIDES = {"finetunes_cancel": {"job_id": "queued_finetune"}}


@functools.cache
def unsafe_operations() -> dict[str, tuple[str, str]]:
    """operationId: (method, path) of every operation of the OpenAPI schema that changes something."""
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    return {
        operation["operationId"]: (method.upper(), path)
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if method.upper() in ("POST", "PUT", "PATCH", "DELETE")
    }


def test_every_unsafe_operation_is_either_audited_here_or_declared_not_audited_with_a_reason():
    operations = set(unsafe_operations())

    assert operations - set(AUDITED) - set(NOT_AUDITED) == set(), "new operations: audit them, or say why not"
    assert set(AUDITED) | set(NOT_AUDITED) <= operations, "operations that no longer exist"
    assert not set(AUDITED) & set(NOT_AUDITED)


def world_for_changes(operation: str) -> Tenant:
    """One project with one of everything (tests/security/tenants.py), and what makes each operation change
    something: a second tag to merge into, a queued fine-tune to cancel, a merge not yet asked for, no redaction
    job under way, and the two entries with one conversation embedded alike, so that keeping one per cluster
    deletes the other."""
    own = tenant_create("own")
    project = own.project
    own.objects["other_tag"] = Tag.objects.create(project=project, name="other").pk
    dataset = Dataset.objects.get(pk=own.objects["dataset"])
    RedactionJob.objects.filter(pk=own.objects["redaction"]).update(status=JobStatus.FAILED)
    FineTuneJob.objects.filter(pk=own.objects["finetune"]).update(merge_status="")
    if operation == "finetune_evaluations_cancel":  # the world's evaluation has finished: nothing to cancel
        EvaluationRun.objects.filter(pk=own.objects["evaluation"]).update(status=FineTuneStatus.QUEUED)
    if operation == "deployments_create":  # the world's fine-tune passes the promotion gate: an editor may deploy it
        rule = promotion_rule_get(project=project).gate_rule.as_dict()
        EvaluationRun.objects.filter(pk=own.objects["evaluation"]).update(
            results={"gate": {"passed": True, "checks": [], "rule": rule}}
        )
    if operation == "deployments_stop":  # no active route sends calls to the deployment
        ProxyRoute.objects.filter(pk=own.objects["route"]).update(active=False, share=0)
    if operation == "finetunes_cancel":  # only then: a dataset with a queued fine-tune cannot be deleted
        base = BaseModel.objects.get(name="tiny")
        queued = finetune_create(dataset=dataset, base_model=base, hyperparameters={"max_steps": 2})
        own.objects["queued_finetune"] = queued.pk
    vector = vector_bytes(np.ones(DIMENSION, dtype="float32") / DIMENSION**0.5)
    for entry in dataset.entries.all():
        EntryEmbeddingFactory(entry=entry, vector=vector)  # fresh for the entry's text
    return own


def llama_cpp_installed(settings, folder: Path) -> None:
    """A llama.cpp folder as LOGTUNE_LLAMA_CPP_DIR wants it: its two converters and its own gguf-py."""
    (folder / "gguf-py" / "gguf").mkdir(parents=True)
    (folder / "gguf-py" / "gguf" / "__init__.py").write_text("")
    for name in ("convert_lora_to_gguf.py", "convert_hf_to_gguf.py"):
        (folder / name).write_text("raise SystemExit(1)\n")
    settings.LOGTUNE_LLAMA_CPP_DIR = str(folder)


def filled(value: object, objects: dict[str, int]) -> object:
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return objects[value[1:-1]]
    if isinstance(value, list):
        return [filled(item, objects) for item in value]
    if isinstance(value, dict):
        return {key: filled(item, objects) for key, item in value.items()}
    return value


@pytest.mark.parametrize("how", ["key", "session"])
@pytest.mark.parametrize("operation", sorted(AUDITED))
def test_every_change_through_the_api_is_audited_naming_the_user_or_the_key(operation, how, settings, tmp_path):
    own = world_for_changes(operation)
    if operation == "finetunes_gguf":  # offered only where llama.cpp's converter is installed (it never runs here)
        llama_cpp_installed(settings, tmp_path / "llama.cpp")
    body, actions = AUDITED[operation]
    method, path = unsafe_operations()[operation]
    names = {**PATH_OBJECTS, **PATH_OVERRIDES.get(operation, {})}
    url = re.sub(r"\{(\w+)\}", lambda m: str(own.objects[names[m.group(1)]]), path)
    role = Role.OWNER if operation in BY_OWNER else Role.EDITOR
    editor = own.users[role]
    key = ApiKey.objects.get(project=own.project, name=f"own {role}")
    if how == "key":
        client = APIClient(HTTP_AUTHORIZATION=f"Bearer {own.keys[role]}")
    else:
        client = APIClient()
        client.force_authenticate(editor)
        url += "?project=own"
    before = AuditEvent.objects.aggregate(last=Max("pk"))["last"] or 0

    response = client.generic(method, url, json.dumps(filled(body, own.objects)), content_type="application/json")

    if how == "key" and operation in BY_PERSON:
        assert response.status_code == 403, f"{method} {url}: {response.status_code} {response.content[:300]!r}"
        assert not AuditEvent.objects.filter(pk__gt=before).exists()
        return
    assert response.status_code < 300, f"{method} {url}: {response.status_code} {response.content[:300]!r}"
    events = list(AuditEvent.objects.filter(pk__gt=before))
    assert actions <= {event.action for event in events}, f"{operation} wrote {[e.action for e in events]}"
    for event in events:
        assert event.project_id == own.project.pk
        who = (event.actor_id, event.api_key_id)
        assert who == ((None, key.pk) if how == "key" else (editor.pk, None)), f"{event.action}: {who}"


def test_a_bulk_change_too_large_for_the_request_is_audited_when_its_job_finishes_naming_the_key(
    project, key_client, monkeypatch
):
    from curation.logs.bulk import services as bulk
    from curation.logs.services import logs_ingest

    logs_ingest(project=project, items=[{"prompt": f"q{i}", "completion": "a", "tags": ["old"]} for i in range(3)])
    monkeypatch.setattr(bulk, "INLINE_LIMIT", 1)  # as for more than 5,000 logs
    started = key_client.post("/api/v1/logs/bulk", {"action": "delete", "filter": "tag=old"}, format="json")
    assert started.status_code == 202, started.content
    assert not AuditEvent.objects.filter(action="logs.delete").exists()  # not before it has happened

    bulk.bulk_job_run(job_id=started.json()["id"])

    event = AuditEvent.objects.get(action="logs.delete")
    assert (event.count, event.actor, event.api_key, event.query) == (
        3,
        None,
        ApiKey.objects.get(name="tests"),
        "tag=old",
    )
    assert event.detail["job"] == started.json()["id"]
