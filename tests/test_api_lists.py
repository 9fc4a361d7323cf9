"""Every list of the API pages the same way: `cursor` and `limit` in, `{"results", "next_cursor"}` out, the same
bounds everywhere (curation/common/listing.py)."""

import re

import pytest
from drf_spectacular.generators import SchemaGenerator

from curation.audit.services import audit_record
from curation.common.listing import PAGE_SIZE_MAX
from curation.models import JobStatus
from tests.factories import (
    DatasetEntryFactory,
    DatasetFactory,
    DatasetSnapshotFactory,
    DeploymentFactory,
    FineTuneJobFactory,
    ImportJobFactory,
    LogEntryFactory,
    ProxyRouteFactory,
    TagFactory,
)

# Small lists whose size the server bounds, answered whole (docs/api.md says why).
UNPAGED = {"/api/v1/base-models", "/api/v1/finetunes/{job_id}/losses"}


def _schema() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)


def _answer(schema: dict, operation: dict) -> dict:
    body = operation["responses"]["200"]["content"]
    answer = next(iter(body.values()))["schema"]
    if "$ref" in answer:
        answer = schema["components"]["schemas"][answer["$ref"].rsplit("/", 1)[1]]
    return answer


def test_every_list_is_a_page_with_the_same_parameters_and_bounds():
    schema = _schema()
    pages = {}
    for path, item in schema["paths"].items():
        operation = item.get("get")
        if operation is None or "200" not in operation["responses"] or "content" not in operation["responses"]["200"]:
            continue
        answer = _answer(schema, operation)
        if answer.get("type") == "array":
            assert path in UNPAGED, f"GET {path} answers a bare list"
        elif "next_cursor" in answer.get("properties", {}):
            assert answer["properties"]["results"]["type"] == "array"
            pages[path] = {p["name"]: p["schema"] for p in operation["parameters"] if p["in"] == "query"}

    assert set(pages) == {
        "/api/v1/logs", "/api/v1/tags", "/api/v1/datasets", "/api/v1/datasets/{dataset_id}/entries",
        "/api/v1/datasets/{dataset_id}/snapshots", "/api/v1/imports", "/api/v1/audit", "/api/v1/finetunes",
        "/api/v1/endpoints", "/api/v1/finetunes/{job_id}/evaluations", "/api/v1/regression-sets",
        "/api/v1/finetunes/{job_id}/evaluations/{evaluation_id}/votes", "/api/v1/deployments", "/api/v1/routes",
        "/api/v1/documents", "/api/v1/generation-jobs", "/api/v1/generation-jobs/{generation_job_id}/rows",
    }  # fmt: skip
    for path, parameters in pages.items():
        assert parameters["cursor"] == {"type": "string"}, path
        assert parameters["limit"] == {"type": "integer", "minimum": 1, "maximum": PAGE_SIZE_MAX}, path


@pytest.fixture
def three_of_each(project, owner):
    dataset = DatasetFactory(project=project, name="Kept")
    for name in ("b", "a", "c"):
        TagFactory(project=project, name=name)
        ImportJobFactory(project=project)
        job = FineTuneJobFactory(dataset=dataset)
        ProxyRouteFactory(name=name, deployment=DeploymentFactory(job=job, name=f"ft-{name}"))
        audit_record(project=project, action="key.revoke", actor=owner)
    DatasetFactory(project=project, name="Another")
    DatasetFactory(project=project, name="Zeta")
    entries = [DatasetEntryFactory(dataset=dataset) for _ in range(3)]
    for _ in range(3):
        DatasetSnapshotFactory(dataset=dataset, status=JobStatus.SUCCEEDED)
    LogEntryFactory.ingest(project=project, items=[{"prompt": f"{i}?", "completion": "!"} for i in range(3)])
    return {"dataset": dataset.pk, "entries": [entry.pk for entry in entries]}


LISTS = [
    "/api/v1/logs", "/api/v1/tags", "/api/v1/datasets", "/api/v1/datasets/{dataset}/entries",
    "/api/v1/datasets/{dataset}/snapshots", "/api/v1/imports", "/api/v1/audit", "/api/v1/finetunes",
    "/api/v1/deployments", "/api/v1/routes",
]  # fmt: skip


@pytest.mark.parametrize("path", LISTS)
def test_a_list_is_walked_a_row_at_a_time_by_its_cursors(client_for, owner, three_of_each, path):
    client = client_for(owner)
    url = re.sub(r"{dataset}", str(three_of_each["dataset"]), path) + "?project=acme&limit=1"
    everything = client.get(url.replace("limit=1", "limit=500")).json()["results"]

    seen, cursor = [], ""
    for _ in range(10):
        page = client.get(f"{url}&cursor={cursor}").json()
        seen += page["results"]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert len(everything) >= 3
    assert seen == everything  # each row once, in the list's order
    if path == "/api/v1/datasets/{dataset}/entries":
        assert [entry["id"] for entry in seen] == three_of_each["entries"]
    if path in ("/api/v1/tags", "/api/v1/datasets", "/api/v1/routes"):
        assert [row["name"] for row in seen] == sorted(row["name"] for row in seen)


@pytest.mark.parametrize("path", LISTS)
def test_a_list_refuses_a_limit_out_of_bounds_and_a_made_up_cursor(client_for, owner, three_of_each, path):
    client = client_for(owner)
    url = re.sub(r"{dataset}", str(three_of_each["dataset"]), path) + "?project=acme"

    too_many = client.get(f"{url}&limit={PAGE_SIZE_MAX + 1}")
    none = client.get(f"{url}&limit=0")
    made_up = client.get(f"{url}&cursor=bm90LWEtY3Vyc29y")

    assert [r.status_code for r in (too_many, none, made_up)] == [400, 400, 400]
    assert list(too_many.json()) == ["limit"] and list(none.json()) == ["limit"] and list(made_up.json()) == ["cursor"]
    assert client.get(url).json()["next_cursor"] is None  # the default page holds all three
