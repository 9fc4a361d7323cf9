import pytest
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.http import QueryDict

from curation.datasets.services import dataset_add_logs, dataset_create
from curation.logs.bulk import services as bulk
from curation.logs.bulk.services import bulk_apply_to_ids, bulk_job_create, bulk_job_run
from curation.logs.filters import logs_filter
from curation.models import AuditEvent, BulkJob, DatasetEntry, JobStatus, LogEntry, LogTag, Tag
from curation.tags.services import tag_delete, tag_merge, tag_update, tags_add, tags_remove
from tests.factories import DatasetFactory, LogEntryFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def tagged_logs(project) -> QuerySet[LogEntry]:
    """Ten logs, by id: the first five tagged a, the other five b."""
    items = [{"prompt": f"question {i}", "completion": "answer", "tags": ["a"] if i < 5 else ["b"]} for i in range(10)]
    LogEntryFactory.ingest(project=project, items=items)
    return LogEntry.objects.filter(project=project).order_by("id")


def tag_names(log: LogEntry) -> set[str]:
    return {t.name for t in log.tags.all()}


def test_tags_add_tags_exactly_the_filtered_logs_once(project, tagged_logs):
    matching = logs_filter(project=project, params=QueryDict("tag=a"))

    assert tags_add(project=project, logs=matching, names=["reviewed", "a"]) == 5  # "a" was already there
    assert tags_add(project=project, logs=matching, names=["reviewed"]) == 0
    assert [tag_names(log) for log in tagged_logs] == [{"a", "reviewed"}] * 5 + [{"b"}] * 5


def test_tags_remove_removes_only_from_the_filtered_logs(project, tagged_logs):
    tags_add(project=project, logs=tagged_logs, names=["x"])

    removed = tags_remove(project=project, logs=logs_filter(project=project, params=QueryDict("tag=b")), names=["x"])

    assert removed == 5
    assert [("x" in tag_names(log)) for log in tagged_logs] == [True] * 5 + [False] * 5


def test_tag_rename_recolour_and_refuse_a_taken_name(project, tagged_logs):
    tag = Tag.objects.get(project=project, name="a")

    tag_update(tag=tag, name="alpha", color="#ff0000")

    assert Tag.objects.get(pk=tag.pk).name == "alpha"
    with pytest.raises(ValidationError, match="already exists"):
        tag_update(tag=tag, name="b")
    with pytest.raises(ValidationError, match="#rrggbb"):
        tag_update(tag=tag, color="red")


def test_merging_moves_every_log_to_the_target_and_deletes_the_source(project, tagged_logs):
    tags_add(
        project=project, logs=tagged_logs.filter(id__in=[tagged_logs[0].pk, tagged_logs[1].pk]), names=["b"]
    )  # two logs have both tags: no duplicate link
    source, target = Tag.objects.get(project=project, name="a"), Tag.objects.get(project=project, name="b")

    moved = tag_merge(source=source, target=target)

    assert moved == 3
    assert not Tag.objects.filter(pk=source.pk).exists()
    assert all(tag_names(log) == {"b"} for log in tagged_logs)


def test_deleting_a_tag_keeps_the_logs(project, tagged_logs):
    assert tag_delete(tag=Tag.objects.get(project=project, name="a")) == 5
    assert LogEntry.objects.filter(project=project).count() == 10
    assert not LogTag.objects.filter(tag__name="a").exists()


def test_a_selection_is_acted_on_at_once_and_audited(project, tagged_logs, owner, outsider):
    ids = [log.pk for log in tagged_logs[:3]]
    foreign_id = LogEntryFactory(project=outsider.projects.get()).pk

    changed = bulk_apply_to_ids(project=project, action="delete", params={}, ids=[*ids, foreign_id], actor=owner)

    assert changed == 3
    assert LogEntry.objects.filter(pk=foreign_id).exists()  # another project's id is ignored
    event = AuditEvent.objects.exclude(action__startswith="key.").get(project=project)
    assert (event.action, event.count, event.actor) == ("logs.delete", 3, owner)


def test_deleting_logs_keeps_dataset_entries_as_copies_that_say_which_log_went_when_and_by_whom(
    project, tagged_logs, owner
):
    dataset = dataset_create(project=project, name="d")
    dataset_add_logs(dataset=dataset, logs=tagged_logs)

    gone = tagged_logs[0].pk

    assert bulk.logs_delete(logs=tagged_logs.filter(id__in=[gone]), actor=owner) == 1

    assert DatasetEntry.objects.filter(dataset=dataset).count() == 10
    unlinked = DatasetEntry.objects.get(dataset=dataset, log__isnull=True)
    assert (unlinked.source_log_id, unlinked.source_deleted_by, unlinked.source_deleted) == (gone, owner, True)
    assert unlinked.source_deleted_at is not None
    assert not DatasetEntry.objects.filter(dataset=dataset, log__isnull=False, source_deleted_at__isnull=False)
    assert not LogTag.objects.filter(log_id=gone).exists()


def test_a_job_deleting_all_matching_logs_in_chunks_records_who_asked_on_every_entry(
    project, tagged_logs, editor, settings
):
    settings.LOGTUNE_BULK_CHUNK = 3
    dataset = dataset_create(project=project, name="d")
    dataset_add_logs(dataset=dataset, logs=tagged_logs)
    tagged_a = [log.pk for log in tagged_logs[:5]]
    job = bulk_job_create(project=project, action="delete", params={}, query="tag=a", actor=editor)

    bulk_job_run(job_id=job.pk)

    unlinked = DatasetEntry.objects.filter(dataset=dataset, log__isnull=True)
    assert unlinked.count() == 5 and {entry.source_deleted_by for entry in unlinked} == {editor}
    assert sorted(unlinked.values_list("source_log_id", flat=True)) == tagged_a
    assert AuditEvent.objects.get(action="logs.delete").actor == editor


def test_a_job_on_all_matching_logs_runs_in_chunks_and_one_whose_worker_died_is_resumed_by_the_reaper(
    project, tagged_logs, owner, monkeypatch, settings
):
    settings.LOGTUNE_BULK_CHUNK = 2
    job = bulk_job_create(
        project=project, action="tag_add", params={"tags": "done"}, query="tag_none=done", actor=owner
    )
    assert job.total == 10
    calls = {"n": 0}
    real_apply = bulk._apply

    def die_in_third_chunk(**kwargs):
        calls["n"] += 1
        changed = real_apply(**kwargs)
        if calls["n"] == 3:
            raise SystemExit("worker lost")  # no handler runs: as for a killed process, the chunk is rolled back
        return changed

    monkeypatch.setattr(bulk, "_apply", die_in_third_chunk)
    with pytest.raises(SystemExit):
        bulk_job_run(job_id=job.pk, worker="doomed@host")
    job.refresh_from_db()
    assert (job.status, job.attempts, job.done, job.changed) == (JobStatus.RUNNING, 1, 4, 4)
    assert LogTag.objects.filter(tag__name="done").count() == 4

    monkeypatch.setattr(bulk, "_apply", real_apply)
    settings.LOGTUNE_BULK_HEARTBEAT_TIMEOUT_S = 0
    assert bulk.bulk_jobs_reap() == 1  # re-queued (its task sent on commit)
    assert BulkJob.objects.get(pk=job.pk).status == JobStatus.QUEUED
    job = bulk_job_run(job_id=job.pk, worker="rescue@host")

    assert (job.status, job.attempts, job.done, job.changed, job.progress) == (JobStatus.SUCCEEDED, 2, 10, 10, 1.0)
    assert all("done" in tag_names(log) for log in tagged_logs)
    event = AuditEvent.objects.get(action="logs.tag_add")
    assert (event.query, event.count, event.actor, event.detail["matched"]) == ("tag_none=done", 10, owner, 10)


def test_a_second_delivery_of_a_running_bulk_job_does_nothing(project, tagged_logs, owner):
    job = bulk_job_create(project=project, action="delete", params={}, query="tag=a", actor=owner)
    assert bulk.bulk_job_claim(job_id=job.pk, worker="first@host")

    again = bulk_job_run(job_id=job.pk, worker="second@host")

    assert (again.status, again.attempts, again.worker, again.done) == (JobStatus.RUNNING, 1, "first@host", 0)
    assert LogEntry.objects.filter(project=project).count() == 10


def test_a_bulk_run_that_lost_its_job_to_another_changes_nothing_more(project, tagged_logs, owner, settings):
    job = bulk_job_create(project=project, action="delete", params={}, query="tag=a", actor=owner)
    assert bulk.bulk_job_claim(job_id=job.pk, worker="slow@host")
    slow = BulkJob.objects.select_related("project").get(pk=job.pk)
    settings.LOGTUNE_BULK_HEARTBEAT_TIMEOUT_S = 0
    assert bulk.bulk_job_claim(job_id=job.pk, worker="fresh@host")  # the slow run looked dead: taken over

    with pytest.raises(bulk.BulkJobLost):
        bulk._run_chunks(slow, None)

    assert (
        LogEntry.objects.filter(project=project).count() == 10
    )  # its chunk was rolled back with the refused progress
    job.refresh_from_db()
    assert (job.attempts, job.worker, job.done) == (2, "fresh@host", 0)


def test_the_reaper_fails_a_bulk_job_past_its_attempts_and_audits_what_it_changed_for_who_asked(
    project, tagged_logs, api_key, settings
):
    from curation.models import ApiKey

    key = ApiKey.objects.get(project=project)
    settings.LOGTUNE_BULK_CHUNK = 2
    settings.LOGTUNE_BULK_MAX_ATTEMPTS = 1
    settings.LOGTUNE_BULK_HEARTBEAT_TIMEOUT_S = 0
    job = bulk_job_create(project=project, action="delete", params={}, query="tag=a", api_key=key)
    assert bulk.bulk_job_claim(job_id=job.pk, worker="gone@host")
    job = BulkJob.objects.select_related("project").get(pk=job.pk)
    # One chunk committed as a run commits it, then its worker died.
    with transaction.atomic():
        logs_chunk = LogEntry.objects.filter(project=project, id__in=[tagged_logs[4].pk, tagged_logs[3].pk])
        changed = bulk._apply(project=project, action="delete", params={}, logs=logs_chunk, api_key=key)
        BulkJob.objects.filter(pk=job.pk).update(done=2, changed=changed, last_id=tagged_logs[3].pk)

    assert bulk.bulk_jobs_reap() == 1

    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.finished_at is not None
    assert "gone@host stopped sending heartbeats" in job.error and "after 2 of 5 logs" in job.error
    assert "at most 1 (LOGTUNE_BULK_MAX_ATTEMPTS). 2 logs were changed; ask again for the rest." in job.error
    event = AuditEvent.objects.get(action="logs.delete")
    assert (event.count, event.actor, event.api_key, event.detail["status"]) == (2, None, key, "failed")


def test_the_reaper_sends_a_queued_bulk_job_the_broker_never_got_and_leaves_finished_ones(
    project, tagged_logs, owner, monkeypatch
):
    from curation.logs.bulk.tasks import bulk_job_run_task

    sent: list[int] = []
    monkeypatch.setattr(bulk_job_run_task, "delay", sent.append)
    unsent = bulk_job_create(project=project, action="tag_add", params={"tags": "x"}, query="tag=a", actor=owner)
    fresh = bulk_job_create(project=project, action="tag_add", params={"tags": "y"}, query="tag=a", actor=owner)
    done = bulk_job_create(project=project, action="tag_add", params={"tags": "z"}, query="tag=a", actor=owner)
    BulkJob.objects.filter(pk=unsent.pk).update(enqueued_at=None)
    BulkJob.objects.filter(pk=done.pk).update(enqueued_at=None, status=JobStatus.SUCCEEDED)

    assert bulk.bulk_jobs_reap() == 1

    assert sent == [unsent.pk] and fresh.pk not in sent
    assert BulkJob.objects.get(pk=unsent.pk).enqueued_at is not None


def test_adding_to_a_dataset_skips_logs_already_in_it(project, tagged_logs):
    dataset = dataset_create(project=project, name="math")

    first = dataset_add_logs(dataset=dataset, logs=logs_filter(project=project, params=QueryDict("tag=a")))
    second = dataset_add_logs(dataset=dataset, logs=tagged_logs)

    assert (first, second) == (5, 5)
    entry = DatasetEntry.objects.filter(dataset=dataset).order_by("id").first()
    assert entry.messages == entry.log.messages
    assert entry.turns == 2
    assert entry.est_tokens == (len(entry.log.search_text) + 3) // 4


@pytest.mark.parametrize(
    ("action", "params", "field"),
    [("tag_add", {}, "tags"), ("dataset_add", {"dataset": 999999}, "dataset"), ("explode", {}, "action")],
)
def test_bad_bulk_requests_name_the_field(project, tagged_logs, action, params, field):
    with pytest.raises(ValidationError) as error:
        bulk_apply_to_ids(project=project, action=action, params=params, ids=[tagged_logs[0].pk])

    assert field in error.value.message_dict


def test_a_dataset_of_another_project_cannot_be_targeted(project, tagged_logs, outsider):
    theirs = DatasetFactory(project=outsider.projects.get())

    with pytest.raises(ValidationError):
        bulk_apply_to_ids(
            project=project, action="dataset_add", params={"dataset": theirs.pk}, ids=[tagged_logs[0].pk]
        )


def test_a_text_searched_selection_can_be_untagged_and_added_to_a_dataset(project, tagged_logs):
    searched = logs_filter(project=project, params=QueryDict("q=question 7"))
    tags_add(project=project, logs=searched, names=["seven"])

    removed = tags_remove(project=project, logs=searched, names=["seven"])
    added = dataset_add_logs(dataset=dataset_create(project=project, name="s"), logs=searched)

    assert (removed, added) == (1, 1)


def test_an_inline_action_on_all_matching_logs_records_its_filter(key_client, project, tagged_logs):
    key_client.post("/api/v1/logs/bulk", {"action": "tag_add", "tags": ["x"], "filter": "tag=a"}, format="json")

    event = AuditEvent.objects.get(project=project, action="logs.tag_add")
    assert (event.query, event.count, event.api_key is not None) == ("tag=a", 5, True)


def test_a_filter_object_takes_each_parameter_in_the_type_its_schema_declares(key_client, project, tagged_logs):
    url = "/api/v1/logs/bulk"
    wrong = key_client.post(url, {"action": "delete", "filter": {"provider": 0.0}, "dry_run": True}, format="json")
    number = key_client.post(url, {"action": "delete", "filter": {"min_tokens": 0}, "dry_run": True}, format="json")
    text = key_client.post(url, {"action": "delete", "filter": {"tag": "a"}, "dry_run": True}, format="json")

    assert wrong.status_code == 400 and wrong.json() == {"filter": ["provider: must be text."]}
    assert number.status_code == 200
    assert text.status_code == 200 and text.json()["matched"] == LogEntry.objects.filter(tags__name="a").count()
