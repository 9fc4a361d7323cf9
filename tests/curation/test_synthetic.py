"""Synthetic entries: kept out of validation by a split (unless the dataset says otherwise), counted apart, filtered
by origin, shown with their provenance, and exported like any other entry."""

import json

import pytest

from curation.datasets.export import export_stream
from curation.datasets.selectors import dataset_stats
from curation.datasets.services import dataset_entries_add_synthetic, dataset_split, dataset_update
from curation.models import AuditEvent, DatasetEntry, Split
from tests.factories import DatasetEntryFactory, DatasetFactory, LogEntryFactory, qa

pytestmark = pytest.mark.django_db

PROVENANCE = {
    "job_id": 3, "kind": "documents", "endpoint": "teacher (gpt-x)", "model": "gpt-x", "template_sha256": "ab" * 32,
    "seed": 0, "document": {"id": 1, "name": "handbook.pdf", "sha256": "cd" * 32},
    "chunks": [{"id": "c2", "index": 2, "start": 100, "end": 4100, "heading_path": ["Billing", "Refunds"],
                "first_page": 3, "last_page": 4}],
    "style": "paraphrase",
}  # fmt: skip


@pytest.fixture
def mixed(project):
    """Two entries copied from logs, twelve imported ones, six synthetic ones."""
    dataset = DatasetFactory(project=project, name="Mixed")
    for log in LogEntryFactory.ingest(
        project=project, items=[{"prompt": f"l{i}", "completion": "ok"} for i in range(2)]
    ):
        DatasetEntryFactory(dataset=dataset, log=log)
    for i in range(12):
        DatasetEntryFactory(dataset=dataset, messages=qa(f"imported {i}?", "ok"))
    dataset_entries_add_synthetic(dataset=dataset, rows=[(qa(f"generated {i}?", "ok"), PROVENANCE) for i in range(6)])
    return dataset


def validation_ids(dataset) -> set[int]:
    return set(DatasetEntry.objects.filter(dataset=dataset, split=Split.VALIDATION).values_list("id", flat=True))


def test_a_split_draws_validation_from_entries_that_are_not_synthetic(mixed):
    train, validation = dataset_split(dataset=mixed, validation_ratio=0.5, seed=7)

    assert (train, validation) == (13, 7)  # round(14 * 0.5) of the 14 that are not synthetic; 20 in all
    first = validation_ids(mixed)
    assert not DatasetEntry.objects.filter(id__in=first, synthetic=True).exists()
    assert DatasetEntry.objects.filter(dataset=mixed, synthetic=True, split=Split.TRAIN).count() == 6
    dataset_split(dataset=mixed, validation_ratio=0.5, seed=7)
    assert validation_ids(mixed) == first
    dataset_split(dataset=mixed, validation_ratio=0.5, seed=8)
    assert validation_ids(mixed) != first
    event = AuditEvent.objects.filter(action="dataset.split").latest("id")
    assert (event.count, event.detail["train"], event.detail["validation"]) == (20, 13, 7)


def test_the_setting_lets_a_split_draw_synthetic_entries_and_moves_nothing_by_itself(mixed, editor):
    dataset_split(dataset=mixed, validation_ratio=0.5, seed=7)
    before = validation_ids(mixed)

    dataset_update(dataset=mixed, synthetic_in_validation=True, actor=editor)

    assert validation_ids(mixed) == before
    assert AuditEvent.objects.filter(action="dataset.update").latest("id").detail["synthetic_in_validation"] == {
        "from": False, "to": True,
    }  # fmt: skip
    assert dataset_split(dataset=mixed, validation_ratio=0.5, seed=7) == (10, 10)
    assert DatasetEntry.objects.filter(dataset=mixed, synthetic=True, split=Split.VALIDATION).exists()


def test_a_person_may_move_a_synthetic_entry_to_validation(client, mixed, editor):
    entry = DatasetEntry.objects.filter(dataset=mixed, synthetic=True).first()
    client.force_login(editor)

    client.post(f"/p/acme/datasets/{mixed.pk}/entries/action", {"action": "validation", "ids": [entry.pk]})

    entry.refresh_from_db()
    assert entry.split == Split.VALIDATION


def test_stats_count_synthetic_entries_apart(client, mixed, viewer):
    DatasetEntry.objects.filter(pk=DatasetEntry.objects.filter(dataset=mixed, synthetic=True).first().pk).update(
        split=Split.VALIDATION
    )
    stats = dataset_stats(dataset=mixed)

    assert (stats.entries, stats.logged, stats.synthetic) == (20, 14, 6)
    assert (stats.synthetic_train, stats.synthetic_validation) == (5, 1)
    assert (stats.from_logs, stats.imported) == (2, 12)
    client.force_login(viewer)
    page = client.get(f"/p/acme/datasets/{mixed.pk}/stats").content.decode()
    assert "14 from logs or files · 6 synthetic" in page
    assert "5 in train · 1 in validation" in page


def test_stats_of_a_dataset_without_synthetic_entries_say_nothing_of_them(client, dataset, viewer):
    client.force_login(viewer)
    page = client.get(f"/p/acme/datasets/{dataset.pk}/stats").content.decode()
    assert "synthetic" not in page.lower()


def test_the_entry_list_filters_by_origin_and_badges_synthetic_entries(client, mixed, viewer):
    client.force_login(viewer)

    def listed(origin: str) -> int:
        return client.get(f"/p/acme/datasets/{mixed.pk}/", {"origin": origin}).context["page"].total

    assert (listed("logged"), listed("imported"), listed("synthetic"), listed("")) == (2, 12, 6, 20)
    assert listed("nonsense") == 20
    page = client.get(f"/p/acme/datasets/{mixed.pk}/", {"origin": "synthetic"}).content.decode()
    assert page.count('class="badge synthetic"') == 6
    assert '<option value="synthetic" selected>' in page


def test_the_api_lists_entries_by_origin_with_their_provenance(key_client, mixed):
    body = key_client.get(f"/api/v1/datasets/{mixed.pk}/entries", {"origin": "synthetic"}).json()
    assert len(body["results"]) == 6
    assert all(row["synthetic"] and row["provenance"] == PROVENANCE for row in body["results"])
    logged = key_client.get(f"/api/v1/datasets/{mixed.pk}/entries", {"origin": "logged"}).json()["results"]
    assert [(row["synthetic"], row["provenance"]) for row in logged] == [(False, {}), (False, {})]
    refused = key_client.get(f"/api/v1/datasets/{mixed.pk}/entries", {"origin": "made-up"})
    assert refused.status_code == 400
    assert "origin" in refused.json()


def test_the_api_does_not_write_provenance(key_client, mixed):
    entry = DatasetEntry.objects.filter(dataset=mixed, synthetic=False).first()
    answer = key_client.patch(
        f"/api/v1/datasets/{mixed.pk}/entries/{entry.pk}", {"synthetic": True, "provenance": {}}, format="json"
    )
    assert answer.status_code == 200  # fields the input does not take are ignored, as everywhere in the API
    assert (answer.json()["synthetic"], answer.json()["provenance"]) == (False, {})
    entry.refresh_from_db()
    assert (entry.synthetic, entry.provenance) == (False, {})


def test_the_dataset_api_counts_synthetic_entries_and_sets_the_rule(key_client, mixed):
    DatasetEntry.objects.filter(pk=DatasetEntry.objects.filter(dataset=mixed, synthetic=True).first().pk).update(
        split=Split.VALIDATION
    )
    body = key_client.get(f"/api/v1/datasets/{mixed.pk}").json()
    assert (body["entries"], body["synthetic"], body["synthetic_validation"]) == (20, 6, 1)
    assert body["synthetic_in_validation"] is False

    patched = key_client.patch(f"/api/v1/datasets/{mixed.pk}", {"synthetic_in_validation": True}, format="json")

    assert patched.status_code == 200, patched.content
    assert patched.json()["synthetic_in_validation"] is True
    mixed.refresh_from_db()
    assert mixed.synthetic_in_validation is True
    bad = key_client.patch(f"/api/v1/datasets/{mixed.pk}", {"synthetic_in_validation": "maybe"}, format="json")
    assert bad.status_code == 400
    assert "synthetic_in_validation" in bad.json()


def test_the_dataset_form_sets_the_rule(client, mixed, editor):
    client.force_login(editor)
    client.post(f"/p/acme/datasets/{mixed.pk}/edit", {"name": "Mixed", "synthetic_in_validation": "1"})
    mixed.refresh_from_db()
    assert mixed.synthetic_in_validation is True
    page = client.get(f"/p/acme/datasets/{mixed.pk}/").content.decode()
    assert 'name="synthetic_in_validation" value="1" checked' in page
    client.post(f"/p/acme/datasets/{mixed.pk}/edit", {"name": "Mixed"})
    mixed.refresh_from_db()
    assert mixed.synthetic_in_validation is False


def test_the_entry_page_shows_the_provenance_and_links_the_seed_log(client, project, mixed, viewer):
    log = LogEntryFactory.ingest(project=project, items=[{"prompt": "seed", "completion": "ok"}])[0]
    [linked, gone] = dataset_entries_add_synthetic(
        dataset=mixed,
        rows=[(qa("a?", "b"), {**PROVENANCE, "seed_log_id": log.pk}), (qa("c?", "d"), {"seed_log_id": 999_999})],
    )
    client.force_login(viewer)

    page = client.get(f"/p/acme/datasets/{mixed.pk}/entries/{linked.pk}/").content.decode()
    assert 'id="provenance"' in page
    for shown in ("handbook.pdf", "#2", "Billing › Refunds", "3–4", "100–4100", "teacher (gpt-x)", "gpt-x",
                  "#3", "paraphrase", "template_sha256", f'href="/p/acme/logs/{log.pk}/"'):  # fmt: skip
        assert shown in page, shown
    other = client.get(f"/p/acme/datasets/{mixed.pk}/entries/{gone.pk}/").content.decode()
    assert "log 999999" in other
    assert "/logs/999999/" not in other
    plain = DatasetEntry.objects.filter(dataset=mixed, synthetic=False).first()
    assert 'id="provenance"' not in client.get(f"/p/acme/datasets/{mixed.pk}/entries/{plain.pk}/").content.decode()


def test_exports_write_synthetic_entries_like_any_other(project):
    dataset = DatasetFactory(project=project)
    dataset_entries_add_synthetic(dataset=dataset, rows=[(qa("generated?", "yes"), PROVENANCE)])

    lines = b"".join(export_stream(dataset=dataset, format="openai").chunks).decode().splitlines()

    assert [json.loads(line) for line in lines] == [{"messages": qa("generated?", "yes")}]
