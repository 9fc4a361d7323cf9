from datetime import UTC, datetime, timedelta

import pytest

from curation.models import LogEntry
from tests.curation.samples import anthropic_log, openai_log
from tests.factories import LogEntryFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def provider_logs(project) -> list[dict]:
    """The log objects as sent and stored: twelve OpenAI calls an hour apart (o0…o11), an Anthropic call (a0),
    and an OpenAI error (e0)."""
    start = datetime(2026, 9, 1, tzinfo=UTC)
    items = []
    for i in range(12):
        log = openai_log(
            created_at=(start + timedelta(hours=i)).isoformat(),
            latency_ms=100 * i,
            tags=["math"] if i % 2 else ["math", "bad"],
            metadata={"env": "prod" if i < 6 else "dev", "user": {"plan": "pro" if i % 3 == 0 else "free"}, "n": i},
            external_id=f"o{i}",
        )
        log["request"]["messages"][1]["content"] = f"question number {i}"
        items.append(log)
    items.append(anthropic_log(created_at="2026-09-02T00:00:00Z", external_id="a0"))
    items.append(
        openai_log(
            status_code=500,
            response={"error": {"message": "boom"}},
            external_id="e0",
            created_at="2026-08-01T00:00:00Z",
        )
    )
    LogEntryFactory.ingest(project=project, items=items)
    return items


def ids(response) -> set[str]:
    assert response.status_code == 200, response.content
    return {row["external_id"] for row in response.json()["results"]}


def test_it_lists_newest_first_with_tags(key_client, provider_logs):
    rows = key_client.get("/api/v1/logs").json()["results"]

    stamps = [row["created_at"] for row in rows]
    assert stamps == sorted(stamps, reverse=True)
    assert len(rows) == 14
    assert "messages" not in rows[0]
    assert set(rows[-1]["tags"]) <= {"math", "bad"}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("model=claude-3-5-sonnet-20241022", {"a0"}),
        ("provider=anthropic", {"a0"}),
        ("status=error", {"e0"}),
        ("tag=bad", {"o0", "o2", "o4", "o6", "o8", "o10"}),
        ("tag=math,bad&max_latency_ms=300", {"o0", "o2"}),
        ("tag_none=math", {"a0"}),
        ("tag=nosuchtag", set()),
        ("tag_any=nosuchtag", set()),
        ("tag_none=nosuchtag&model=claude-3-5-sonnet-20241022", {"a0"}),
        ("tag_any=weather,bad&min_latency_ms=900", {"o10", "a0"}),
        ("created_after=2026-09-01T09:00:00Z&created_before=2026-09-01T11:00:00Z", {"o9", "o10"}),
        ("metadata=env:dev&metadata=user.plan:pro", {"o6", "o9"}),
        ("metadata=n:7", {"o7"}),
        ("q=NUMBER 11", {"o11"}),
        ("q=sunny", {"a0"}),
        ("min_tokens=300", {"a0"}),
        ("external_id=o7", {"o7"}),
        ("external_id=o", set()),
        ("external_id=O7", set()),
        ("external_id=&model=claude-3-5-sonnet-20241022", {"a0"}),
    ],
)
def test_it_filters(key_client, provider_logs, query, expected):
    assert ids(key_client.get(f"/api/v1/logs?{query}&limit=500")) == expected


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=maybe", "status"),
        ("created_after=yesterday", "created_after"),
        ("min_tokens=-1", "min_tokens"),
        ("metadata=novalue", "metadata"),
        ("limit=0", "limit"),
        ("cursor=garbage", "cursor"),
        ("modle=gpt-4o", "modle"),
    ],
)
def test_it_names_the_bad_parameter(key_client, provider_logs, query, field):
    response = key_client.get(f"/api/v1/logs?{query}")

    assert response.status_code == 400
    assert field in response.json()


def test_cursor_pages_walk_every_log_once(key_client, project, provider_logs):
    LogEntry.objects.filter(project=project).update(created_at=datetime(2026, 1, 1, tzinfo=UTC))  # all tied
    seen, cursor = [], ""
    while True:
        page = key_client.get(f"/api/v1/logs?limit=5&cursor={cursor}").json()
        seen += [row["id"] for row in page["results"]]
        cursor = page["next_cursor"]
        if not cursor:
            break

    assert len(seen) == len(set(seen)) == 14
    assert seen == sorted(seen, reverse=True)


def test_detail_has_the_conversation_and_the_original(key_client, project, provider_logs):
    log = LogEntry.objects.get(project=project, external_id="a0")

    body = key_client.get(f"/api/v1/logs/{log.pk}").json()

    assert body["original"] == provider_logs[12]
    assert body["messages"][0] == {"role": "system", "content": "You are a weather bot."}
    assert body["tools"][0]["type"] == "function"


def test_nobody_sees_another_projects_logs(client_for, key_client, project, outsider, viewer, provider_logs):
    log = LogEntry.objects.get(project=project, external_id="o1")

    assert client_for(outsider).get("/api/v1/logs?project=acme").status_code == 404
    assert client_for(outsider).get(f"/api/v1/logs/{log.pk}?project=other").status_code == 404
    assert client_for(outsider).get("/api/v1/logs?project=other").json()["results"] == []
    assert client_for(viewer).get(f"/api/v1/logs/{log.pk}?project=acme").status_code == 200
    assert key_client.get(f"/api/v1/logs/{log.pk}").status_code == 200


def test_the_openapi_schema_describes_the_api(client):
    response = client.get("/api/v1/schema?format=json")

    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {"/api/v1/logs", "/api/v1/logs/{log_id}", "/api/v1/imports"} <= set(paths)
    assert "post" in paths["/api/v1/logs"] and "get" in paths["/api/v1/logs"]
    assert client.get("/api/v1/docs").status_code == 200
