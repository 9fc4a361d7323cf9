import pytest

from curation.logs.bulk import services as bulk
from curation.logs.bulk.services import bulk_job_run
from curation.models import AuditEvent, BulkJob, DatasetEntry, LogEntry, Tag
from tests.factories import DatasetFactory, LogEntryFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def math_and_chat_logs(project) -> list[LogEntry]:
    """Ten logs, by id: six "math i" tagged math, then four "chat i" tagged chat, each answered "ok"."""
    items = [
        {"prompt": f"math {i}" if i < 6 else f"chat {i}", "completion": "ok", "tags": ["math" if i < 6 else "chat"]}
        for i in range(10)
    ]
    return LogEntryFactory.ingest(project=project, items=items)


def test_a_dataset_is_created_filled_by_filter_and_listed(key_client, math_and_chat_logs):
    created = key_client.post("/api/v1/datasets", {"name": "Math", "description": "prod math"}, format="json")
    assert created.status_code == 201, created.content
    dataset_id = created.json()["id"]

    added = key_client.post(f"/api/v1/datasets/{dataset_id}/entries", {"filter": "tag=math"}, format="json")
    again = key_client.post(f"/api/v1/datasets/{dataset_id}/entries", {"filter": {"q": "math"}}, format="json")

    assert added.json() == {"changed": 6, "matched": 6}
    assert again.json()["changed"] == 0
    listing = key_client.get("/api/v1/datasets").json()
    assert [(d["name"], d["entries"]) for d in listing["results"]] == [("Math", 6)]
    assert listing["next_cursor"] is None


def test_entries_are_added_by_ids_and_paged(key_client, project, math_and_chat_logs):
    dataset = DatasetFactory(project=project)

    key_client.post(
        f"/api/v1/datasets/{dataset.pk}/entries", {"log_ids": [log.pk for log in math_and_chat_logs]}, format="json"
    )
    first = key_client.get(f"/api/v1/datasets/{dataset.pk}/entries?limit=4").json()
    second = key_client.get(f"/api/v1/datasets/{dataset.pk}/entries?limit=4&cursor={first['next_cursor']}").json()
    third = key_client.get(f"/api/v1/datasets/{dataset.pk}/entries?limit=4&cursor={second['next_cursor']}").json()

    assert [len(page["results"]) for page in (first, second, third)] == [4, 4, 2]
    assert first["results"][-1]["id"] < second["results"][0]["id"]
    assert third["next_cursor"] is None
    assert key_client.get(f"/api/v1/datasets/{dataset.pk}/entries?q=chat").json()["results"][0]["messages"][0] == {
        "role": "user",
        "content": "chat 6",
    }


def test_entries_paged_by_the_old_after_parameter_answer_as_deprecated(key_client, project, math_and_chat_logs):
    dataset = DatasetFactory(project=project)
    key_client.post(
        f"/api/v1/datasets/{dataset.pk}/entries", {"log_ids": [log.pk for log in math_and_chat_logs]}, format="json"
    )
    first = key_client.get(f"/api/v1/datasets/{dataset.pk}/entries?limit=4")
    second = key_client.get(f"/api/v1/datasets/{dataset.pk}/entries?limit=4&after={first.json()['next_after']}")

    assert "Deprecation" not in first.headers
    assert second.headers["Deprecation"].startswith("@")
    assert second.json()["results"][0]["id"] > first.json()["results"][-1]["id"]
    assert key_client.get(f"/api/v1/datasets/{dataset.pk}/entries?after=x").json() == {"after": ["An entry id."]}


def test_an_entry_is_edited_without_touching_its_log(key_client, project, math_and_chat_logs):
    dataset = DatasetFactory(project=project)
    key_client.post(f"/api/v1/datasets/{dataset.pk}/entries", {"log_ids": [math_and_chat_logs[0].pk]}, format="json")
    entry = DatasetEntry.objects.get(dataset=dataset)
    url = f"/api/v1/datasets/{dataset.pk}/entries/{entry.pk}"
    messages = [{"role": "user", "content": "math 0"}, {"role": "assistant", "content": "better answer"}]

    response = key_client.patch(url, {"messages": messages, "split": "validation"}, format="json")

    assert response.status_code == 200, response.content
    assert (response.json()["edited"], response.json()["split"]) == (True, "validation")
    assert LogEntry.objects.get(pk=math_and_chat_logs[0].pk).messages[1]["content"] == "ok"
    bad = key_client.patch(url, {"messages": [{"role": "bot", "content": "x"}]}, format="json")
    assert bad.status_code == 400
    assert "role" in bad.json()["messages"][0]
    assert DatasetEntry.objects.get(pk=entry.pk).messages == messages


def test_split_by_ratio_and_seed_is_reproducible(key_client, project, math_and_chat_logs):
    dataset = DatasetFactory(project=project)
    key_client.post(f"/api/v1/datasets/{dataset.pk}/entries", {"filter": ""}, format="json")

    first = key_client.post(
        f"/api/v1/datasets/{dataset.pk}/split", {"validation_ratio": 0.3, "seed": 7}, format="json"
    )
    chosen = set(DatasetEntry.objects.filter(dataset=dataset, split="validation").values_list("id", flat=True))
    key_client.post(f"/api/v1/datasets/{dataset.pk}/split", {"validation_ratio": 0.3, "seed": 7}, format="json")

    assert (first.json()["train"], first.json()["validation"]) == (7, 3)
    assert set(DatasetEntry.objects.filter(dataset=dataset, split="validation").values_list("id", flat=True)) == chosen


def test_bulk_tagging_all_matching_runs_as_a_job_above_the_inline_limit(
    key_client, project, math_and_chat_logs, monkeypatch
):
    monkeypatch.setattr(bulk, "INLINE_LIMIT", 3)

    response = key_client.post(
        "/api/v1/logs/bulk", {"action": "tag_add", "tags": ["reviewed"], "filter": "tag=math"}, format="json"
    )

    assert response.status_code == 202, response.content
    job = BulkJob.objects.get(pk=response.json()["id"])
    assert job.total == 6
    bulk_job_run(job_id=job.pk)
    assert key_client.get(f"/api/v1/bulk-jobs/{job.pk}").json()["status"] == "succeeded"
    assert Tag.objects.get(project=project, name="reviewed").logs.count() == 6


def test_bulk_delete_of_a_selection_is_audited_with_the_key(key_client, project, math_and_chat_logs):
    response = key_client.post(
        "/api/v1/logs/bulk", {"action": "delete", "log_ids": [math_and_chat_logs[0].pk]}, format="json"
    )

    assert response.json() == {"changed": 1, "in_datasets": 0}
    event = AuditEvent.objects.exclude(action__startswith="key.").get(project=project)
    assert event.action == "logs.delete" and event.api_key is not None


def test_a_bulk_delete_says_how_many_logs_are_in_datasets_and_their_entries_say_who_deleted_them(
    key_client, project, math_and_chat_logs, monkeypatch
):
    dataset = DatasetFactory(project=project)
    key_client.post(
        f"/api/v1/datasets/{dataset.pk}/entries",
        {"log_ids": [log.pk for log in math_and_chat_logs[:3]]},
        format="json",
    )

    dry = key_client.post(
        "/api/v1/logs/bulk", {"action": "delete", "filter": "tag=math", "dry_run": True}, format="json"
    )
    done = key_client.post(
        "/api/v1/logs/bulk",
        {"action": "delete", "log_ids": [math_and_chat_logs[0].pk, math_and_chat_logs[7].pk]},
        format="json",
    )
    monkeypatch.setattr(bulk, "INLINE_LIMIT", 2)
    queued = key_client.post("/api/v1/logs/bulk", {"action": "delete", "filter": "tag=math"}, format="json")

    assert dry.json() == {"dry_run": True, "matched": 6, "in_datasets": 3}
    assert LogEntry.objects.count() == 10 - 2
    assert done.json() == {"changed": 2, "in_datasets": 1}
    assert queued.status_code == 202 and queued.json()["in_datasets"] == 2 and queued.json()["total"] == 5
    bulk_job_run(job_id=queued.json()["id"])
    entries = key_client.get(f"/api/v1/datasets/{dataset.pk}/entries").json()["results"]
    assert [(e["log"], e["source_log_id"]) for e in entries] == [(None, log.pk) for log in math_and_chat_logs[:3]]
    assert all(e["source_deleted_at"] and e["source_deleted_by"].startswith("API key lt_") for e in entries)
    job_event = AuditEvent.objects.get(action="logs.delete", detail__job=queued.json()["id"])
    assert job_event.api_key is not None  # the job acted for the key that asked for it


@pytest.mark.parametrize(
    "body",
    [
        {"action": "delete"},
        {"action": "delete", "log_ids": [1], "filter": "tag=x"},
        {"action": "delete", "filter": "colour=red"},
        {"action": "tag_add", "log_ids": [1]},
        {"action": "melt", "log_ids": [1]},
    ],
)
def test_bad_bulk_requests_are_400(key_client, math_and_chat_logs, body):
    response = key_client.post("/api/v1/logs/bulk", body, format="json")

    assert response.status_code == 400
    assert LogEntry.objects.count() == 10


def test_tags_are_renamed_merged_and_deleted(key_client, project, math_and_chat_logs):
    tags = {t["name"]: t for t in key_client.get("/api/v1/tags").json()["results"]}
    assert (tags["math"]["logs"], tags["chat"]["logs"]) == (6, 4)

    key_client.patch(f"/api/v1/tags/{tags['chat']['id']}", {"name": "talk", "color": "#00ff00"}, format="json")
    merged = key_client.post(f"/api/v1/tags/{tags['chat']['id']}/merge", {"into": tags["math"]["id"]}, format="json")

    assert merged.json()["moved"] == 4
    assert [t["name"] for t in key_client.get("/api/v1/tags").json()["results"]] == ["math"]
    assert key_client.delete(f"/api/v1/tags/{tags['math']['id']}").status_code == 204
    assert LogEntry.objects.filter(project=project).count() == 10


def test_viewers_read_but_cannot_change_and_outsiders_see_nothing(
    client_for, project, viewer, outsider, math_and_chat_logs
):
    dataset = DatasetFactory(project=project)
    as_viewer, as_outsider = client_for(viewer), client_for(outsider)

    assert as_viewer.get("/api/v1/datasets?project=acme").status_code == 200
    assert as_viewer.post("/api/v1/datasets?project=acme", {"name": "x"}, format="json").status_code == 403
    assert as_viewer.delete(f"/api/v1/datasets/{dataset.pk}?project=acme").status_code == 403
    bulk_body = {"action": "delete", "log_ids": [math_and_chat_logs[0].pk]}
    assert as_viewer.post("/api/v1/logs/bulk?project=acme", bulk_body, format="json").status_code == 403
    assert as_outsider.get(f"/api/v1/datasets/{dataset.pk}?project=other").status_code == 404
    answer = as_outsider.post("/api/v1/logs/bulk?project=other", bulk_body, format="json").json()
    assert answer == {"changed": 0, "in_datasets": 0}
    assert LogEntry.objects.filter(project=project).count() == 10


def test_a_dataset_name_is_trimmed_but_counted_whole_against_its_limit(key_client, project):
    trimmed = key_client.post("/api/v1/datasets", {"name": "  Math  "}, format="json")
    too_long = key_client.post("/api/v1/datasets", {"name": " " + "x" * 200}, format="json")
    blank = key_client.post("/api/v1/datasets", {"name": "   "}, format="json")

    assert (trimmed.status_code, trimmed.json()["name"]) == (201, "Math")
    assert too_long.status_code == 400 and "name" in too_long.json()
    assert blank.status_code == 400 and "name" in blank.json()
