"""One log through the API: its id from POST, finding it by external_id, changing its tags and metadata (PATCH),
deleting it (DELETE); by owner, editor, viewer and outsider."""

import orjson
import pytest
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from curation.models import ApiKey, AuditEvent, DatasetEntry, LogEntry, LogTag, Project, Tag
from curation.projects.services import api_key_create
from tests.curation.samples import openai_log
from tests.factories import DatasetEntryFactory, DatasetFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def log(key_client, project) -> LogEntry:
    sent = openai_log(external_id="req-1", tags=["math", "old"], metadata={"env": "prod", "user": {"plan": "pro"}})
    response = key_client.post("/api/v1/logs", data=orjson.dumps(sent), content_type="application/json")
    assert response.status_code == 200, response.content
    return LogEntry.objects.get(pk=response.json()["ids"][0]["id"])


def patch(client, log_id, body, project="acme"):
    return client.patch(f"/api/v1/logs/{log_id}?project={project}", body, format="json")


def tag_names(log: LogEntry) -> list[str]:
    return sorted(log.tags.values_list("name", flat=True))


# --- Ids and external ids --------------------------------------------------------------------------------------


def test_the_id_post_answers_is_the_log_found_by_its_external_id(key_client, log):
    found = key_client.get("/api/v1/logs?external_id=req-1").json()["results"]

    assert [row["id"] for row in found] == [log.pk]
    assert key_client.get("/api/v1/logs?external_id=req-2").json()["results"] == []


def test_a_resent_log_answers_the_id_of_the_log_stored_first(key_client, log):
    again = key_client.post("/api/v1/logs", data=orjson.dumps(openai_log(external_id="req-1")),
                            content_type="application/json")  # fmt: skip

    assert again.json()["ids"] == [{"index": 0, "id": log.pk, "duplicate": True}]


# --- PATCH -------------------------------------------------------------------------------------------------------


def test_an_editor_replaces_the_tags_and_the_metadata_and_it_is_audited(client_for, editor, log):
    response = patch(client_for(editor), log.pk, {"tags": ["math", "new"], "metadata": {"env": "dev", "n": None}})

    assert response.status_code == 200, response.content
    assert sorted(response.json()["tags"]) == ["math", "new"]
    log.refresh_from_db()
    assert tag_names(log) == ["math", "new"]
    assert log.metadata == {"env": "dev", "n": None}  # replaced, not merged: "user" is gone, null is kept
    assert b"prod" in log.original.encode()  # the original keeps what was sent
    event = AuditEvent.objects.get(action="logs.update")
    assert (event.actor, event.api_key, event.count) == (editor, None, 1)
    assert event.detail == {
        "log": log.pk, "tags_added": ["new"], "tags_removed": ["old"], "metadata_keys": ["env", "n", "user"],
    }  # fmt: skip


def test_tags_add_and_remove_change_only_the_tags_named(key_client, log):
    response = patch(key_client, log.pk, {"tags_add": ["new", "math"], "tags_remove": ["old", "absent"]})

    assert response.status_code == 200, response.content
    assert tag_names(log) == ["math", "new"]
    assert LogEntry.objects.get(pk=log.pk).metadata == {"env": "prod", "user": {"plan": "pro"}}
    event = AuditEvent.objects.get(action="logs.update")
    assert event.api_key == ApiKey.objects.get(name="tests")
    assert event.detail == {"log": log.pk, "tags_added": ["new"], "tags_removed": ["old"]}


def test_tags_add_and_remove_apply_after_tags_removals_last(key_client, log):
    response = patch(key_client, log.pk, {"tags": ["a", "b"], "tags_add": ["c", "d"], "tags_remove": ["b", "d"]})

    assert response.status_code == 200, response.content
    assert tag_names(log) == ["a", "c"]


def test_an_empty_patch_changes_nothing(key_client, log):
    assert patch(key_client, log.pk, {}).status_code == 200

    assert tag_names(log) == ["math", "old"]
    assert AuditEvent.objects.get(action="logs.update").count == 0


def test_an_empty_tag_list_removes_every_tag_and_leaves_the_tags_themselves(key_client, log):
    assert patch(key_client, log.pk, {"tags": []}).status_code == 200

    assert tag_names(log) == []
    assert set(Tag.objects.values_list("name", flat=True)) == {"math", "old"}


def test_a_patch_that_changes_nothing_is_recorded_with_a_count_of_zero(key_client, log):
    assert patch(key_client, log.pk, {"tags": ["old", "math"]}).status_code == 200

    assert AuditEvent.objects.get(action="logs.update").count == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"tags": "math"}, "tags"),
        ({"tags": [""]}, "tags"),
        ({"tags": ["x" * 101]}, "tags"),
        ({"metadata": ["a"]}, "metadata"),
        ({"metadata": {"a": "\u0000"}}, "metadata"),
    ],
)
def test_a_bad_patch_is_a_400_naming_the_field_and_changes_nothing(key_client, log, body, field):
    response = patch(key_client, log.pk, body)

    assert response.status_code == 400
    assert field in response.json()
    assert tag_names(log) == ["math", "old"]
    assert not AuditEvent.objects.filter(action="logs.update").exists()


# --- DELETE ------------------------------------------------------------------------------------------------------


def test_deleting_a_log_in_a_dataset_keeps_the_entry_and_says_who_deleted_it(client_for, editor, project, log):
    entry = DatasetEntryFactory(dataset=DatasetFactory(project=project), log=log)

    response = client_for(editor).delete(f"/api/v1/logs/{log.pk}?project=acme")

    assert response.status_code == 200, response.content
    assert response.json() == {"id": log.pk, "deleted": True, "datasets": 1, "entries": 1}
    assert not LogEntry.objects.filter(pk=log.pk).exists()
    assert not LogTag.objects.filter(log_id=log.pk).exists()
    entry = DatasetEntry.objects.get(pk=entry.pk)
    assert (entry.log_id, entry.source_log_id, entry.source_deleted_by) == (None, log.pk, editor)
    assert entry.source_deleted_at is not None
    event = AuditEvent.objects.get(action="logs.delete")
    assert (event.actor, event.count) == (editor, 1)
    assert event.detail == {"log": log.pk, "external_id": "req-1", "datasets": 1, "entries": 1}


def test_deleting_a_log_in_no_dataset_says_so_and_a_second_delete_is_a_404(key_client, log):
    response = key_client.delete(f"/api/v1/logs/{log.pk}")

    assert response.json() == {"id": log.pk, "deleted": True, "datasets": 0, "entries": 0}
    assert key_client.delete(f"/api/v1/logs/{log.pk}").status_code == 404
    assert AuditEvent.objects.get(action="logs.delete").api_key == ApiKey.objects.get(name="tests")


# --- Who may ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("persona", ["owner", "editor"])
def test_owners_and_editors_may_change_and_delete(request, client_for, log, persona):
    client = client_for(request.getfixturevalue(persona))

    assert patch(client, log.pk, {"tags_add": ["x"]}).status_code == 200
    assert client.delete(f"/api/v1/logs/{log.pk}?project=acme").status_code == 200


def test_a_viewer_reads_but_may_not_change_or_delete(client_for, viewer, log):
    client = client_for(viewer)

    assert client.get(f"/api/v1/logs/{log.pk}?project=acme").status_code == 200
    assert patch(client, log.pk, {"tags": []}).status_code == 403
    assert client.delete(f"/api/v1/logs/{log.pk}?project=acme").status_code == 403
    assert tag_names(log) == ["math", "old"]
    assert not AuditEvent.objects.filter(action__in=["logs.update", "logs.delete"]).exists()


def test_an_outsider_and_a_key_of_another_project_get_404(client_for, outsider, log):
    theirs = Project.objects.get(slug="other")
    other_key = APIClient(HTTP_AUTHORIZATION=f"Bearer {api_key_create(project=theirs, name='theirs')[1]}")

    for client, project in [(client_for(outsider), "acme"), (client_for(outsider), "other"), (other_key, "other")]:
        assert patch(client, log.pk, {"tags": []}, project=project).status_code == 404
        assert client.delete(f"/api/v1/logs/{log.pk}?project={project}").status_code == 404
    assert client_for(outsider).get("/api/v1/logs?external_id=req-1&project=other").json()["results"] == []
    assert other_key.get("/api/v1/logs?external_id=req-1").json()["results"] == []
    assert LogEntry.objects.filter(pk=log.pk).exists()
    assert tag_names(log) == ["math", "old"]


# --- Schema -------------------------------------------------------------------------------------------------------


def test_the_schema_declares_the_ids_the_external_id_filter_and_the_one_log_operations():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    components = schema["components"]["schemas"]
    one = schema["paths"]["/api/v1/logs/{log_id}"]
    listing = schema["paths"]["/api/v1/logs"]["get"]

    assert "ids" in components["IngestResult"]["properties"]
    assert set(components["IngestedId"]["properties"]) == {"index", "id", "duplicate"}
    assert "external_id" in {p["name"] for p in listing["parameters"]}
    assert (one["patch"]["operationId"], one["delete"]["operationId"]) == ("logs_update", "logs_destroy")
    assert set(components["PatchedLogDetailInputRequest"]["properties"]) >= {
        "tags",
        "tags_add",
        "tags_remove",
        "metadata",
    }
    assert set(components["LogDetailDeleted"]["properties"]) == {"id", "deleted", "datasets", "entries"}
