"""Datasets of preference pairs made from a chat dataset's edited entries: the pairs and their provenance, the entries
that give none (counted by reason), adding again, the refusals, the API and roles, and what a dataset of pairs
exports and freezes."""

import json

import pytest
from django.core.exceptions import ValidationError

from curation.datasets.export import export_preview, export_stream, snapshot_request
from curation.datasets.export.preference import SKIPPED_NO_ORIGINAL
from curation.datasets.pairs import SKIPPED_ALREADY_ADDED, dataset_pairs_from_edits, edit_pairs_count
from curation.datasets.services import dataset_add_logs, entry_update
from curation.logs.services import logs_ingest
from curation.models import AuditEvent, Dataset, DatasetKind, LogEntry
from tests.factories import DatasetFactory

QUESTION = [{"role": "user", "content": "Capital of France?"}]
ORIGINAL = {"role": "assistant", "content": "The capital of France is Paris, a city of about two million people."}
EDITED = {"role": "assistant", "content": "Paris."}


@pytest.fixture
def edited(project):
    """A chat dataset of four logged entries: two edited, one untouched, one edited whose log is gone."""
    source = DatasetFactory(project=project, name="Support")
    logs_ingest(project=project, items=[{"messages": [*QUESTION, ORIGINAL]} for _ in range(4)])
    dataset_add_logs(dataset=source, logs=LogEntry.objects.filter(project=project))
    first, second, _untouched, orphan = source.entries.order_by("id")
    entry_update(entry=first, messages=[*QUESTION, EDITED])
    entry_update(entry=second, messages=[*QUESTION, {"role": "assistant", "content": "Paris, France."}])
    entry_update(entry=orphan, messages=[*QUESTION, {"role": "assistant", "content": "Paris!"}])
    orphan.log.delete()
    return source


def text(lines: list[bytes]) -> list[dict]:
    return [json.loads(line) for line in b"".join(lines).splitlines()]


def test_each_edited_answer_gives_a_pair_with_the_logs_answer_rejected_and_its_provenance(project, edited, editor):
    result = dataset_pairs_from_edits(source=edited, name="Support pairs", actor=editor)

    pairs = result.dataset
    assert (pairs.kind, pairs.name, result.added) == (DatasetKind.PREFERENCE, "Support pairs", 2)
    assert result.skipped == {SKIPPED_NO_ORIGINAL: 1}
    first, second = pairs.entries.order_by("id")
    assert (first.messages, first.rejected) == ([*QUESTION, EDITED], ORIGINAL)
    assert second.messages[-1]["content"] == "Paris, France."
    source_entry = edited.entries.order_by("id").first()
    assert first.provenance == {"source": "edit", "dataset_id": edited.pk, "entry_id": source_entry.pk,
                                "log_id": source_entry.log_id}  # fmt: skip
    event = AuditEvent.objects.get(action="entries.add_pairs")
    assert (event.count, event.actor_id, event.detail["dataset_id"]) == (2, editor.pk, pairs.pk)


def test_making_pairs_again_adds_only_new_ones(edited):
    pairs = dataset_pairs_from_edits(source=edited, name="Support pairs").dataset
    entry = edited.entries.filter(edited=False).get()
    entry_update(entry=entry, messages=[*QUESTION, {"role": "assistant", "content": "It is Paris."}])

    again = dataset_pairs_from_edits(source=edited, target=pairs)

    assert again.added == 1
    assert again.skipped == {SKIPPED_ALREADY_ADDED: 2, SKIPPED_NO_ORIGINAL: 1}
    assert pairs.entries.count() == 3


def test_an_edit_back_to_the_original_answer_gives_no_pair(edited):
    entry = edited.entries.order_by("id").first()
    entry_update(entry=entry, messages=[*QUESTION, ORIGINAL])

    result = dataset_pairs_from_edits(source=edited, name="Pairs")

    assert result.added == 1 and result.skipped == {SKIPPED_NO_ORIGINAL: 1}  # no longer an edited entry
    assert edit_pairs_count(source=edited) == 1


def test_pairs_go_only_to_a_dataset_of_pairs_of_the_project_and_come_only_from_conversations(project, edited):
    chat = DatasetFactory(project=project, name="Chat")
    elsewhere = DatasetFactory(name="Elsewhere", kind=DatasetKind.PREFERENCE)
    pairs = DatasetFactory(project=project, name="Pairs", kind=DatasetKind.PREFERENCE)

    with pytest.raises(ValidationError, match="holds conversations, not preference pairs"):
        dataset_pairs_from_edits(source=edited, target=chat)
    with pytest.raises(ValidationError, match="not in this project"):
        dataset_pairs_from_edits(source=edited, target=elsewhere)
    with pytest.raises(ValidationError, match="Name the new dataset"):
        dataset_pairs_from_edits(source=edited, name=" ")
    with pytest.raises(ValidationError, match="holds preference pairs"):
        dataset_pairs_from_edits(source=pairs, name="More")
    assert not pairs.entries.exists()


# --- exports and snapshots of a dataset of pairs ---------------------------------------------------------------------


def test_a_dataset_of_pairs_exports_its_pairs_and_refuses_chat_formats(edited):
    pairs = dataset_pairs_from_edits(source=edited, name="Pairs").dataset

    export = export_stream(dataset=pairs, format="preference")
    rows = text(list(export.chunks))
    openai = text(list(export_stream(dataset=pairs, format="openai_preference").chunks))

    assert rows[0] == {"prompt": QUESTION, "chosen": [EDITED], "rejected": [ORIGINAL]}
    assert openai[0]["non_preferred_output"] == [ORIGINAL] and len(openai) == 2
    assert export_preview(dataset=pairs, format="preference").as_dict()["rows_written"] == 2
    with pytest.raises(ValidationError, match="exported as pairs"):
        export_stream(dataset=pairs, format="openai")


def test_a_snapshot_of_pairs_writes_trl_rows_with_split_and_entry(edited):
    pairs = dataset_pairs_from_edits(source=edited, name="Pairs").dataset

    snapshot = snapshot_request(dataset=pairs)
    again = snapshot_request(dataset=pairs)

    rows = [json.loads(line) for line in snapshot.file.read().splitlines()]
    first = pairs.entries.order_by("id").first()
    assert rows[0] == {"prompt": QUESTION, "chosen": [EDITED], "rejected": [ORIGINAL], "split": "train",
                       "entry_id": first.pk}  # fmt: skip
    assert (snapshot.rows_total, snapshot.rows_train, snapshot.rows_validation) == (2, 2, 0)
    assert again.sha256 == snapshot.sha256


# --- the API ---------------------------------------------------------------------------------------------------------


def test_the_api_makes_pairs_into_a_new_dataset_and_then_into_it_again(client_for, editor, edited):
    url = f"/api/v1/datasets/{edited.pk}/pairs?project=acme"

    made = client_for(editor).post(url, {"name": "Support pairs"}, format="json")
    target = made.json()["dataset"]["id"]
    again = client_for(editor).post(url, {"target": target}, format="json")

    assert made.status_code == 200, made.json()
    assert made.json() == {
        "dataset": made.json()["dataset"] | {"name": "Support pairs", "kind": "preference", "entries": 2},
        "added": 2, "skipped": 1, "skipped_reasons": {SKIPPED_NO_ORIGINAL: 1},
    }  # fmt: skip
    assert again.json()["added"] == 0 and again.json()["skipped_reasons"][SKIPPED_ALREADY_ADDED] == 2


def test_the_api_refuses_viewers_a_chat_target_and_a_target_of_another_project(client_for, viewer, editor, edited):
    url = f"/api/v1/datasets/{edited.pk}/pairs?project=acme"
    other = DatasetFactory(name="Elsewhere", kind=DatasetKind.PREFERENCE)

    assert client_for(viewer).post(url, {"name": "Pairs"}, format="json").status_code == 403
    chat = client_for(editor).post(url, {"target": edited.pk}, format="json")
    foreign = client_for(editor).post(url, {"target": other.pk}, format="json")

    assert chat.status_code == 400 and "not preference pairs" in chat.json()["target"][0]
    assert foreign.status_code == 404
    assert not Dataset.objects.filter(name="Pairs").exists()


def test_the_export_api_refuses_a_chat_format_for_a_dataset_of_pairs(client_for, viewer, edited):
    pairs = dataset_pairs_from_edits(source=edited, name="Pairs").dataset

    response = client_for(viewer).get(f"/api/v1/datasets/{pairs.pk}/export?project=acme&format=alpaca")

    assert response.status_code == 400 and "'preference' (TRL)" in response.json()["format"][0]


# --- the pages -------------------------------------------------------------------------------------------------------


def test_the_dataset_page_counts_the_pairs_its_edits_give_and_makes_them_for_editors(client, editor, viewer, edited):
    client.force_login(viewer)
    seen = client.get(f"/p/acme/datasets/{edited.pk}/")
    refused = client.post(f"/p/acme/datasets/{edited.pk}/pairs", {"name": "Pairs"})
    client.force_login(editor)
    page = client.get(f"/p/acme/datasets/{edited.pk}/")
    made = client.post(f"/p/acme/datasets/{edited.pk}/pairs", {"name": "Pairs"}, follow=True)

    assert seen.context["pairs_from_edits"] is None and b"Make preference pairs from edits" not in seen.content
    assert refused.status_code == 403
    assert page.context["pairs_from_edits"] == 2 and b"Make preference pairs from edits" in page.content
    pairs = Dataset.objects.get(name="Pairs")
    assert made.redirect_chain[-1][0] == f"/p/acme/datasets/{pairs.pk}/"
    assert b"Added 2 pairs to Pairs (1 no original answer" in made.content
    assert b"Preference pairs" in made.content and b"rejected" in made.content
    assert [label for _, label in made.context["export_formats"]] == [
        "Preference pairs (TRL)", "Preference pairs (OpenAI)",
    ]  # fmt: skip


def test_an_entry_of_pairs_shows_its_chosen_and_rejected_answers(client, viewer, edited):
    pairs = dataset_pairs_from_edits(source=edited, name="Pairs").dataset
    entry = pairs.entries.order_by("id").first()
    client.force_login(viewer)

    page = client.get(f"/p/acme/datasets/{pairs.pk}/entries/{entry.pk}/")

    assert (page.context["chosen_text"], page.context["rejected_text"]) == ("Paris.", ORIGINAL["content"])
    assert b"Preference pair" in page.content


def test_the_cli_refuses_a_chat_format_for_a_dataset_of_pairs(edited):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    dataset_pairs_from_edits(source=edited, name="Pairs")

    with pytest.raises(CommandError, match="exported as pairs"):
        call_command("export_dataset", "Pairs", project="acme", output="-", format="alpaca")


def test_pre_flight_checks_read_a_pair_as_its_prompt_and_chosen_answer(edited):
    from curation.datasets.validation import dataset_validate

    pairs = dataset_pairs_from_edits(source=edited, name="Pairs").dataset

    report = dataset_validate(dataset=pairs)

    assert report.errors == []
