"""Dataset pages: create, fill, search, edit with a diff, delete, split, stats, import, permissions."""

import re

import orjson
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from curation.datasets.export import snapshot_build, snapshot_create, snapshots
from curation.datasets.forms import EntryForm
from curation.datasets.selectors import bin_width, dataset_stats
from curation.datasets.services import (
    DatasetDeletion,
    dataset_add_logs,
    dataset_create,
    dataset_entries_ingest,
    entries_delete,
    entry_update,
    est_tokens,
)
from curation.logs.imports.run import import_job_run
from curation.models import AuditEvent, Dataset, DatasetEntry, DatasetSnapshot, ImportJob, JobStatus, LogEntry, Split
from tests.factories import LogEntryFactory

pytestmark = pytest.mark.django_db

WEATHER_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}


def conversation(i: int) -> list[dict]:
    return [
        {"role": "system", "content": "You answer briefly."},
        {"role": "user", "content": f"Question {i}: what is {i} + {i}?"},
        {"role": "assistant", "content": f"Answer {i}:\nit is {i + i}."},
    ]


@pytest.fixture
def math_logs(project) -> list[LogEntry]:
    """Six sums (four on gpt-4o, two on llama-3), then a weather question answered through a tool call."""
    items = [{"messages": conversation(i), "model": "gpt-4o" if i % 3 else "llama-3"} for i in range(6)]
    items.append(
        {
            "messages": [
                {"role": "user", "content": "Weather in PARIS?"},
                {"role": "assistant", "content": None, "tool_calls": [WEATHER_CALL]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
                {"role": "assistant", "content": "18C and sunny.\nTake sunglasses."},
            ],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
            "model": "gpt-4o",
        }
    )
    return LogEntryFactory.ingest(project=project, items=items)


@pytest.fixture
def math_dataset(project, owner, math_logs) -> Dataset:
    """Math, made by the owner: a copy of each of the math_logs."""
    dataset = dataset_create(project=project, name="Math", description="prod math", created_by=owner)
    dataset_add_logs(dataset=dataset, logs=LogEntry.objects.filter(project=project))
    return dataset


def entries(dataset: Dataset) -> list[DatasetEntry]:
    return list(DatasetEntry.objects.filter(dataset=dataset).order_by("id"))


def url(dataset: Dataset, suffix: str = "") -> str:
    return f"/p/{dataset.project.slug}/datasets/{dataset.pk}/{suffix}"


def listed_ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'name="ids" value="(\d+)"', html)]


def editor_post(messages: list[dict], tools: list | None = None, **extra: str) -> dict:
    """What the editor's form posts for this conversation (its fields as parallel lists)."""
    form = EntryForm.from_entry(messages, tools or [])
    data: dict = {"tools": form.tools, **extra}
    for name in ("role", "content", "kind", "tool_calls", "tool_call_id", "extra"):
        data[f"m-{name}"] = [getattr(row, name) for row in form.rows]
    return data


# --- create, rename, describe --------------------------------------------------------------------


def test_an_editor_creates_a_dataset_and_finds_it_in_the_list(client, project, editor):
    client.force_login(editor)

    response = client.post("/p/acme/datasets/new", {"name": "  Support  ", "description": "tickets"})

    dataset = Dataset.objects.get(project=project)
    assert response.status_code == 302
    assert response.url == f"/p/acme/datasets/{dataset.pk}/"
    assert (dataset.name, dataset.description, dataset.created_by) == ("Support", "tickets", editor)
    listing = client.get("/p/acme/datasets/").content.decode()
    assert "Support" in listing and "tickets" in listing


def test_a_taken_name_is_refused_with_a_message(client, project, editor):
    client.force_login(editor)
    client.post("/p/acme/datasets/new", {"name": "Support"})

    response = client.post("/p/acme/datasets/new", {"name": "Support"}, follow=True)

    assert "already exists" in response.content.decode()
    assert Dataset.objects.filter(project=project).count() == 1


def test_a_dataset_is_renamed_and_described(client, math_dataset, editor):
    client.force_login(editor)

    client.post(url(math_dataset, "edit"), {"name": "Arithmetic", "description": "sums\nand more"})

    math_dataset.refresh_from_db()
    assert (math_dataset.name, math_dataset.description) == ("Arithmetic", "sums\nand more")
    assert "sums<br>and more" in client.get(url(math_dataset)).content.decode()


def test_renaming_to_a_taken_name_keeps_the_old_name(client, project, math_dataset, editor):
    dataset_create(project=project, name="Other")
    client.force_login(editor)

    response = client.post(url(math_dataset, "edit"), {"name": "Other", "description": ""}, follow=True)

    assert "already exists" in response.content.decode()
    math_dataset.refresh_from_db()
    assert (math_dataset.name, math_dataset.description) == ("Math", "prod math")


# --- entries --------------------------------------------------------------------------------------


def test_logs_are_copied_into_a_dataset_once(project, math_dataset, math_logs):
    again = dataset_add_logs(dataset=math_dataset, logs=LogEntry.objects.filter(project=project))

    assert again == 0
    copied = entries(math_dataset)
    assert [entry.log_id for entry in copied] == [log.pk for log in math_logs]
    first = copied[0]
    assert (first.messages, first.turns, first.model, first.edited) == (conversation(0), 3, "llama-3", False)
    assert first.est_tokens == est_tokens(math_logs[0].search_text)


def test_the_entry_list_searches_the_text_case_insensitively(client, math_dataset, viewer):
    client.force_login(viewer)
    weather = entries(math_dataset)[-1]

    page = client.get(url(math_dataset), {"q": "paris"}).content.decode()

    assert f'href="{url(math_dataset, f"entries/{weather.pk}/")}"' in page
    assert page.count('<td class="snippet">') == 2  # one row: its prompt and its answer
    assert "Weather in PARIS?" in page


def test_the_entry_list_filters_by_split_edited_and_ids(client, math_dataset, editor):
    first, second, third, *_ = entries(math_dataset)
    DatasetEntry.objects.filter(pk=second.pk).update(split=Split.VALIDATION)
    entry_update(entry=third, messages=[*conversation(2)[:2], {"role": "assistant", "content": "4"}])
    client.force_login(editor)

    assert listed_ids(client.get(url(math_dataset), {"split": "validation"}).content.decode()) == [second.pk]
    assert listed_ids(client.get(url(math_dataset), {"edited": "1"}).content.decode()) == [third.pk]
    assert listed_ids(client.get(url(math_dataset), {"ids": f"{third.pk},{first.pk},x"}).content.decode()) == [
        first.pk,
        third.pk,
    ]


def test_the_entry_list_is_paged_by_id(client, math_dataset, viewer):
    assert dataset_entries_ingest(
        dataset=math_dataset, items=[{"prompt": f"p{i}", "completion": "c"} for i in range(50)]
    )
    client.force_login(viewer)
    all_ids = [entry.pk for entry in entries(math_dataset)]

    first = client.get(url(math_dataset)).content.decode()
    after = re.search(r'href="\?after=(\d+)"', first)
    assert after is not None
    second = client.get(url(math_dataset), {"after": after.group(1)}).content.decode()

    assert [int(i) for i in re.findall(r"entries/(\d+)/", first)] == all_ids[:50]
    assert [int(i) for i in re.findall(r"entries/(\d+)/", second)] == all_ids[50:]
    assert "next 50" not in second


def test_the_dataset_page_runs_as_many_queries_for_fifty_entries_as_for_seven(client, math_dataset, viewer):
    client.force_login(viewer)
    with CaptureQueriesContext(connection) as few:
        assert client.get(url(math_dataset)).status_code == 200
    dataset_entries_ingest(dataset=math_dataset, items=[{"prompt": f"p{i}", "completion": "c"} for i in range(60)])

    with CaptureQueriesContext(connection) as many:
        assert client.get(url(math_dataset)).status_code == 200

    assert len(many) == len(few)


# --- the entry editor -----------------------------------------------------------------------------


def test_an_edit_is_saved_marks_the_entry_edited_and_shows_a_diff_while_the_log_stays(
    client, math_dataset, editor, math_logs
):
    entry = entries(math_dataset)[0]
    client.force_login(editor)
    changed = [*conversation(0)[:2], {"role": "assistant", "content": "Zero."}]

    response = client.post(url(math_dataset, f"entries/{entry.pk}/"), editor_post(changed))

    assert response.status_code == 302
    entry.refresh_from_db()
    assert (entry.messages, entry.edited) == (changed, True)
    assert LogEntry.objects.get(pk=math_logs[0].pk).messages == conversation(0)
    page = client.get(url(math_dataset, f"entries/{entry.pk}/")).content.decode()
    assert re.search(r'<div class="line removed"><span class="sign">−</span>Answer 0:</div>', page)
    assert re.search(r'<div class="line added"><span class="sign">\+</span>Zero.</div>', page)
    assert '+1</span> <span class="removed">−2</span>' in page
    assert 'class="badge edited"' in page


def test_saving_an_entry_unchanged_keeps_it_unedited_even_with_browser_line_breaks(client, math_dataset, editor):
    entry = entries(math_dataset)[-1]  # tool calls, a null content, a tool answer, two lines, and tools
    client.force_login(editor)
    data = editor_post(entry.messages, entry.tools)
    data["m-content"] = [text.replace("\n", "\r\n") for text in data["m-content"]]

    response = client.post(url(math_dataset, f"entries/{entry.pk}/"), data)

    assert response.status_code == 302
    entry.refresh_from_db()
    assert entry.edited is False
    assert "matches its source" in client.get(url(math_dataset, f"entries/{entry.pk}/")).content.decode()


def test_tool_calls_are_edited_as_json(client, math_dataset, editor):
    entry = entries(math_dataset)[-1]
    client.force_login(editor)
    data = editor_post(entry.messages, entry.tools)
    calls = [{**WEATHER_CALL, "function": {"name": "get_weather", "arguments": '{"city": "Lyon"}'}}]
    data["m-tool_calls"][1] = orjson.dumps(calls).decode()

    client.post(url(math_dataset, f"entries/{entry.pk}/"), data)

    entry.refresh_from_db()
    assert entry.messages[1]["tool_calls"][0]["function"]["arguments"] == '{"city": "Lyon"}'
    assert entry.edited is True


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"m-tool_calls": ["", "[{not json", "", ""]}, "tool calls: not valid JSON"),
        ({"m-tool_calls": ["", '[{"id": "c"}]', "", ""]}, "messages.1.tool_calls.0.function: missing required field"),
        ({"m-role": ["user", "assistant", "robot", "assistant"]}, "messages.2.role: unknown role"),
    ],
)
def test_an_invalid_edit_shows_the_error_and_changes_nothing(client, math_dataset, editor, change, error):
    entry = entries(math_dataset)[-1]
    before = (entry.messages, entry.tools, entry.edited, entry.updated_at)
    client.force_login(editor)
    data = {**editor_post(entry.messages, entry.tools), **change}

    response = client.post(url(math_dataset, f"entries/{entry.pk}/"), data)

    assert response.status_code == 400
    page = response.content.decode()
    assert error in page
    assert 'class="msg has-error"' in page
    entry.refresh_from_db()
    assert (entry.messages, entry.tools, entry.edited, entry.updated_at) == before


def test_turns_are_added_and_removed_in_the_form_before_saving(client, math_dataset, editor):
    entry = entries(math_dataset)[0]
    client.force_login(editor)
    page_url = url(math_dataset, f"entries/{entry.pk}/")

    added = client.post(page_url, editor_post(entry.messages, op="add")).content.decode()
    removed = client.post(page_url, editor_post(entry.messages, op="remove:0")).content.decode()

    assert added.count('name="m-role"') == 4
    assert re.findall(r'<option value="(\w+)" selected>', added)[-1] == "user"  # a reply to the last answer
    assert removed.count('name="m-role"') == 2
    assert "You answer briefly." not in removed
    entry.refresh_from_db()
    assert entry.messages == conversation(0)


def test_a_turn_added_and_filled_in_is_saved(client, math_dataset, editor):
    entry = entries(math_dataset)[0]
    client.force_login(editor)
    messages = [*conversation(0), {"role": "user", "content": "And 1 + 1?"}, {"role": "assistant", "content": "2"}]

    client.post(url(math_dataset, f"entries/{entry.pk}/"), editor_post(messages))

    entry.refresh_from_db()
    assert (entry.messages[-2:], entry.turns) == (messages[-2:], 5)


def test_an_imported_entry_has_no_diff(client, math_dataset, viewer):
    dataset_entries_ingest(dataset=math_dataset, items=[{"prompt": "p", "completion": "c"}])
    imported = entries(math_dataset)[-1]
    client.force_login(viewer)

    page = client.get(url(math_dataset, f"entries/{imported.pk}/")).content.decode()

    assert "nothing to compare with" in page
    assert 'class="diff"' not in page


def test_a_no_op_save_of_an_imported_entry_leaves_it_unedited(math_dataset):
    """An imported entry saved unchanged does not count as edited in the stats."""
    dataset_entries_ingest(dataset=math_dataset, items=[{"prompt": "p", "completion": "c"}])
    imported = entries(math_dataset)[-1]

    entry_update(entry=imported, messages=imported.messages, tools=imported.tools)

    assert imported.edited is False


# --- delete and split -----------------------------------------------------------------------------


def test_selected_entries_are_deleted_and_their_logs_stay(client, project, math_dataset, editor, math_logs):
    first, second, *rest = entries(math_dataset)
    client.force_login(editor)

    response = client.post(url(math_dataset, "entries/action"), {"action": "delete", "ids": [first.pk, second.pk]})

    assert response.status_code == 302
    assert [entry.pk for entry in entries(math_dataset)] == [entry.pk for entry in rest]
    assert LogEntry.objects.filter(project=project).count() == len(math_logs)


def test_entries_of_another_dataset_are_not_touched_through_this_one(client, project, math_dataset, editor, math_logs):
    other = dataset_create(project=project, name="Other")
    dataset_add_logs(dataset=other, logs=LogEntry.objects.filter(pk=math_logs[0].pk))
    foreign = entries(other)[0]
    client.force_login(editor)

    client.post(url(math_dataset, "entries/action"), {"action": "delete", "ids": [foreign.pk]})
    client.post(url(math_dataset, "entries/action"), {"action": "validation", "ids": [foreign.pk]})

    assert entries(other) == [foreign]
    assert DatasetEntry.objects.get(pk=foreign.pk).split == Split.TRAIN


def test_entries_delete_counts_only_the_entries_of_the_dataset(project, math_dataset, math_logs):
    other = dataset_create(project=project, name="Other")
    dataset_add_logs(dataset=other, logs=LogEntry.objects.filter(pk=math_logs[0].pk))

    assert entries_delete(dataset=math_dataset, ids=[entries(other)[0].pk, entries(math_dataset)[0].pk]) == 1


def test_split_by_ratio_and_seed_is_exact_and_reproducible(client, math_dataset, editor):
    dataset_entries_ingest(dataset=math_dataset, items=[{"prompt": f"p{i}", "completion": "c"} for i in range(13)])
    client.force_login(editor)

    def split(ratio: str, seed: str) -> set[int]:
        client.post(url(math_dataset, "split"), {"validation_ratio": ratio, "seed": seed})
        return set(
            DatasetEntry.objects.filter(dataset=math_dataset, split=Split.VALIDATION).values_list("id", flat=True)
        )

    first = split("0.25", "7")
    assert len(first) == 5  # round(20 * 0.25)
    assert split("0.25", "7") == first
    assert split("0.25", "8") != first
    assert split("0", "7") == set()
    math_dataset.refresh_from_db()
    assert (math_dataset.validation_ratio, math_dataset.split_seed) == (0, 7)


def test_a_split_ratio_of_one_is_refused(client, math_dataset, editor):
    client.force_login(editor)

    response = client.post(url(math_dataset, "split"), {"validation_ratio": "1", "seed": "1"}, follow=True)

    assert "less than or equal to 0.99" in response.content.decode()
    assert not DatasetEntry.objects.filter(dataset=math_dataset, split=Split.VALIDATION).exists()


def test_entries_are_moved_between_splits_by_hand(client, math_dataset, editor):
    first, second, third, *_ = entries(math_dataset)
    client.force_login(editor)

    client.post(url(math_dataset, "entries/action"), {"action": "validation", "ids": [first.pk, third.pk]})
    response = client.post(
        url(math_dataset, "entries/action"),
        {"action": "train", "ids": [third.pk], "next": url(math_dataset, f"entries/{third.pk}/")},
    )

    assert response.url == url(math_dataset, f"entries/{third.pk}/")
    splits = dict(DatasetEntry.objects.filter(dataset=math_dataset).values_list("id", "split"))
    assert (splits[first.pk], splits[second.pk], splits[third.pk]) == ("validation", "train", "train")


def test_the_action_goes_back_only_to_a_page_of_the_dataset(client, math_dataset, editor):
    client.force_login(editor)
    entry = entries(math_dataset)[0]

    response = client.post(
        url(math_dataset, "entries/action"), {"action": "train", "ids": [entry.pk], "next": "https://evil.example/"}
    )

    assert response.url == url(math_dataset)


# --- stats ----------------------------------------------------------------------------------------


def test_the_stats_count_entries_tokens_turns_models_and_edits(client, math_dataset, viewer, math_logs):
    first, *_ = entries(math_dataset)
    entry_update(entry=first, messages=[*conversation(0)[:2], {"role": "assistant", "content": "0"}])
    DatasetEntry.objects.filter(pk=entries(math_dataset)[1].pk).update(split=Split.VALIDATION)
    dataset_entries_ingest(dataset=math_dataset, items=[{"prompt": "p", "completion": "c"}])
    all_entries = entries(math_dataset)
    tokens = [entry.est_tokens for entry in all_entries]

    stats = dataset_stats(dataset=math_dataset)

    assert (stats.entries, stats.train, stats.validation, stats.edited, stats.imported) == (8, 7, 1, 1, 1)
    assert (stats.tokens_total, stats.tokens_max) == (sum(tokens), max(tokens))
    assert stats.tokens_mean == pytest.approx(sum(tokens) / 8)
    assert (stats.turns_max, stats.turns_mean) == (4, pytest.approx((3 * 6 + 4 + 2) / 8))
    assert stats.models == [("gpt-4o", 5), ("llama-3", 2), ("", 1)]
    assert sum(b.count for b in stats.token_bins) == 8
    assert [(b.label, b.count) for b in stats.turn_bins] == [("0", 0), ("1", 0), ("2", 1), ("3", 6), ("4", 1)]
    assert stats.edited_percent == pytest.approx(12.5)
    client.force_login(viewer)
    panel = client.get(url(math_dataset, "stats")).content.decode()
    assert "12.5%" in panel
    assert 'id="token-bins-' in panel and "gpt-4o" in panel


def test_each_entry_falls_in_the_token_bin_of_its_length(math_dataset):
    dataset_entries_ingest(dataset=math_dataset, items=[{"prompt": "x" * 4000, "completion": "c"}])

    stats = dataset_stats(dataset=math_dataset)

    width = bin_width(stats.tokens_max)
    for entry in entries(math_dataset):
        (bin_,) = [b for b in stats.token_bins if b.low <= entry.est_tokens < b.high]
        assert bin_.count >= 1
    assert len(stats.token_bins) <= 24
    assert all(b.high - b.low == width for b in stats.token_bins)


@pytest.mark.parametrize(("maximum", "width"), [(0, 1), (23, 1), (24, 2), (47, 2), (48, 5), (119, 5), (120, 10)])
def test_bin_widths_are_round_and_give_at_most_24_bins(maximum, width):
    assert bin_width(maximum) == width


def test_an_empty_dataset_has_no_numbers(client, project, viewer):
    dataset = dataset_create(project=project, name="Empty")
    client.force_login(viewer)

    assert dataset_stats(dataset=dataset).entries == 0
    assert "no numbers" in client.get(url(dataset, "stats")).content.decode()


# --- validation panel, export links ---------------------------------------------------------------


def test_the_validation_panel_links_each_finding_to_its_entries(client, math_dataset, viewer):
    dataset_entries_ingest(dataset=math_dataset, items=[{"messages": [{"role": "user", "content": "hi"}]}])
    open_ended = entries(math_dataset)[-1]
    client.force_login(viewer)

    panel = client.get(url(math_dataset, "validation"), {"max_tokens": "5"}, HTTP_HX_REQUEST="true").content.decode()

    assert "<html" not in panel  # a fragment for htmx
    assert f'{url(math_dataset)}?ids={open_ended.pk}"' in panel
    long_ids = ",".join(str(entry.pk) for entry in entries(math_dataset) if entry.est_tokens > 5)
    assert f"?ids={long_ids}" in panel
    assert "Only 8 training examples" in panel


def test_the_validation_page_without_htmx_is_a_whole_page_and_refuses_a_bad_limit(client, math_dataset, viewer):
    client.force_login(viewer)

    page = client.get(url(math_dataset, "validation"), {"max_tokens": "0"}).content.decode()

    assert "<html" in page
    assert "greater than or equal to 1" in page


def test_the_page_links_every_role_to_the_export_api_for_each_format_and_split(client, math_dataset, editor, viewer):
    client.force_login(editor)
    page = client.get(url(math_dataset)).content.decode()
    client.force_login(viewer)
    viewed = client.get(url(math_dataset)).content.decode()

    api = f"/api/v1/datasets/{math_dataset.pk}"
    for fmt in ("openai", "sharegpt", "alpaca", "prompt_completion", "parquet", "preference", "openai_preference"):
        assert f"{api}/export?format={fmt}&amp;split=validation&amp;project=acme" in page
        assert f'hx-get="{api}/export/preview?format={fmt}&amp;project=acme"' in viewed  # reading is a viewer's
        assert f"{api}/export?format={fmt}&amp;split=train&amp;project=acme" in viewed  # downloading is reading
    assert "Freeze snapshot" not in viewed and "Delete dataset" not in viewed  # viewers change nothing


def test_an_editor_freezes_a_small_dataset_in_the_request(client, math_dataset, editor):
    client.force_login(editor)

    response = client.post(url(math_dataset, "snapshots/new"), follow=True)

    snapshot = DatasetSnapshot.objects.get(dataset=math_dataset)
    assert (snapshot.status, snapshot.rows_total, snapshot.created_by) == ("succeeded", 7, editor)
    page = response.content.decode()
    assert f"Snapshot frozen: 7 rows, SHA-256 {snapshot.sha256[:12]}." in page
    assert f"/api/v1/snapshots/{snapshot.pk}/download?project=acme" in page
    assert "every 1s" not in page


def test_a_large_dataset_is_frozen_by_a_worker_with_a_polled_progress_bar(
    client, math_dataset, editor, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(snapshots, "INLINE_LIMIT", 5)
    client.force_login(editor)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(url(math_dataset, "snapshots/new"), follow=True)

    assert len(callbacks) == 1  # queued for a worker once committed
    assert "Freezing 7 entries in the background: progress below." in response.content.decode()
    snapshot = DatasetSnapshot.objects.get(dataset=math_dataset)
    panel = client.get(url(math_dataset, "snapshots/"), HTTP_HX_REQUEST="true").content.decode()
    assert 'hx-trigger="every 1s"' in panel and "0 / 7" in panel

    snapshot_build(snapshot_id=snapshot.pk)

    done = client.get(url(math_dataset, "snapshots/"), HTTP_HX_REQUEST="true").content.decode()
    assert "every 1s" not in done
    assert f"/api/v1/snapshots/{snapshot.pk}/download?project=acme" in done


def test_an_editor_deletes_a_dataset_its_snapshots_go_and_its_logs_stay(
    client, project, math_dataset, editor, math_logs, media, django_capture_on_commit_callbacks
):
    snapshot = snapshot_create(dataset=math_dataset)
    file = media / snapshot.file.name
    assert file.exists()
    client.force_login(editor)

    confirm = client.get(url(math_dataset, "delete")).content.decode()
    with django_capture_on_commit_callbacks(execute=True):  # files go once the deletion is committed
        response = client.post(url(math_dataset, "delete"), follow=True)

    assert "Deletes 7 entries and 1 snapshot. Keeps the logs." in confirm
    assert ">Delete dataset</button>" in confirm
    assert response.redirect_chain[-1][0] == "/p/acme/datasets/"
    assert "Deleted dataset Math with its 7 entries and 1 snapshot. Kept the logs." in response.content.decode()
    assert not Dataset.objects.exists() and not DatasetEntry.objects.exists()
    assert not DatasetSnapshot.objects.exists() and not file.exists()
    assert LogEntry.objects.filter(project=project).count() == len(math_logs)
    event = AuditEvent.objects.get(action="dataset.delete")
    assert (event.count, event.actor, event.detail["name"]) == (7, editor, "Math")
    assert event.detail["deleted"] == {"entries": 7, "snapshots": 1}


def test_the_dataset_page_links_to_a_confirmation_a_viewer_may_read_but_not_act_on(
    client, math_dataset, editor, viewer
):
    client.force_login(editor)
    assert url(math_dataset, "delete") in client.get(url(math_dataset)).content.decode()
    client.force_login(viewer)

    page = client.get(url(math_dataset, "delete"))

    assert page.status_code == 200
    assert "Deletes 7 entries. Keeps the logs." in page.content.decode()
    assert (
        "needs the editor role" in page.content.decode()
        and "</button>" not in page.content.decode().split("<main>")[1]
    )
    assert client.post(url(math_dataset, "delete")).status_code == 403


@pytest.mark.parametrize(
    ("counts", "summary"),
    [
        ((1204, 2, 3, 1), "Deletes 1,204 entries and 2 snapshots. Keeps 3 fine-tunes (their weights, metrics and the "
                          "1 snapshot they trained on) and the logs."),
        ((1, 0, 1, 1), "Deletes 1 entry. Keeps 1 fine-tune (its weights, metrics and the snapshot it trained on) and "
                       "the logs."),
        ((0, 1, 2, 2), "Deletes 0 entries and 1 snapshot. Keeps 2 fine-tunes (their weights, metrics and the 2 "
                       "snapshots they trained on) and the logs."),
    ],
)  # fmt: skip
def test_the_deletion_summary_says_what_goes_and_what_stays(counts, summary):
    entries, snapshots_deleted, finetunes_kept, snapshots_kept = counts
    plan = DatasetDeletion(entries=entries, snapshots_deleted=snapshots_deleted, finetunes_kept=finetunes_kept,
                           snapshots_kept=snapshots_kept, busy=0)  # fmt: skip

    assert plan.summary() == summary
    assert plan.summary(done=True) == summary.replace("Deletes", "Deleted").replace("Keeps", "Kept")


# --- importing a training file --------------------------------------------------------------------


def test_a_jsonl_file_is_imported_into_the_dataset_from_its_page(
    client, project, math_dataset, editor, math_logs, django_capture_on_commit_callbacks
):
    client.force_login(editor)
    lines = [
        {"messages": [{"role": "user", "content": "Imported question"}, {"role": "assistant", "content": "yes"}]},
        {"prompt": "Imported prompt", "completion": "done"},
        {"messages": [{"role": "bot", "content": "x"}]},
    ]
    upload = SimpleUploadedFile("train.jsonl", b"".join(orjson.dumps(line) + b"\n" for line in lines))

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(url(math_dataset, "imports/upload"), {"file": upload})

    assert response.status_code == 302
    assert len(callbacks) == 1  # queued for a worker once committed
    job = ImportJob.objects.get(project=project)
    assert (job.dataset, job.source_name, job.status) == (math_dataset, "train.jsonl", JobStatus.QUEUED)
    panel = client.get(url(math_dataset, "imports/"), HTTP_HX_REQUEST="true")
    assert 'hx-trigger="every 1s"' in panel.content.decode()
    assert "HX-Refresh" not in panel

    import_job_run(job_id=job.pk)

    imported = entries(math_dataset)[len(math_logs) :]
    assert [entry.messages[0]["content"] for entry in imported] == ["Imported question", "Imported prompt"]
    assert all(entry.log_id is None for entry in imported)
    assert LogEntry.objects.filter(project=project).count() == len(math_logs)
    done = client.get(url(math_dataset, "imports/"), HTTP_HX_REQUEST="true")
    assert done["HX-Refresh"] == "true"  # the page reloads to show the new entries
    assert "every 1s" not in done.content.decode()
    assert f"/api/v1/imports/{job.pk}/errors?project=acme" in done.content.decode()
    assert "Imported question" in client.get(url(math_dataset)).content.decode()


# --- who may do what ------------------------------------------------------------------------------


def test_viewers_read_every_page_but_change_nothing(client, math_dataset, viewer):
    entry = entries(math_dataset)[0]
    client.force_login(viewer)

    for path in ("/p/acme/datasets/", url(math_dataset), url(math_dataset, "stats"), url(math_dataset, "validation")):
        assert client.get(path).status_code == 200, path
    entry_page = client.get(url(math_dataset, f"entries/{entry.pk}/")).content.decode()
    assert "<fieldset disabled>" in entry_page and "Save entry" not in entry_page

    writes = {
        "/p/acme/datasets/new": {"name": "New"},
        url(math_dataset, "edit"): {"name": "Renamed"},
        url(math_dataset, "split"): {"validation_ratio": "0.5", "seed": "1"},
        url(math_dataset, "entries/action"): {"action": "delete", "ids": [entry.pk]},
        url(math_dataset, f"entries/{entry.pk}/"): editor_post([{"role": "user", "content": "x"}]),
        url(math_dataset, "imports/upload"): {"file": SimpleUploadedFile("a.jsonl", b"{}\n")},
        url(math_dataset, "snapshots/new"): {},
        url(math_dataset, "delete"): {},
    }
    for path, data in writes.items():
        assert client.post(path, data).status_code == 403, path
    assert [(d.name, d.validation_ratio) for d in Dataset.objects.all()] == [("Math", None)]
    assert DatasetEntry.objects.get(pk=entry.pk).messages == conversation(0)
    assert not ImportJob.objects.exists() and not DatasetSnapshot.objects.exists()


def test_outsiders_get_404_on_every_page(client, math_dataset, outsider):
    entry = entries(math_dataset)[0]
    client.force_login(outsider)

    for path in (
        "/p/acme/datasets/",
        url(math_dataset),
        url(math_dataset, "stats"),
        url(math_dataset, "validation"),
        url(math_dataset, "imports/"),
        url(math_dataset, "snapshots/"),
        url(math_dataset, f"entries/{entry.pk}/"),
    ):
        assert client.get(path).status_code == 404, path
    assert client.post(url(math_dataset, "entries/action"), {"action": "delete", "ids": [entry.pk]}).status_code == 404
    assert client.post(url(math_dataset, "delete")).status_code == 404
    assert DatasetEntry.objects.filter(pk=entry.pk).exists()


def test_a_dataset_is_not_reachable_through_another_project(client, math_dataset, outsider):
    client.force_login(outsider)

    assert client.get(f"/p/other/datasets/{math_dataset.pk}/").status_code == 404
    assert (
        client.get(reverse("dataset-entry", args=["other", math_dataset.pk, entries(math_dataset)[0].pk])).status_code
        == 404
    )
