"""End to end with the real trainer on the tiny local model, on CPU: a dataset's edited answers become a dataset of
preference pairs, which is frozen and trained on with DPO by a real GPU-queue worker; the run's reward margin and
accuracy are stored beside its loss and drawn on the fine-tune's page."""

import pytest

from curation.datasets.pairs import dataset_pairs_from_edits
from curation.datasets.services import dataset_add_logs, dataset_split, entry_update
from curation.logs.services import logs_ingest
from curation.models import DatasetKind, LogEntry
from tests.factories import DatasetFactory
from tests.training.tiny import FRUITS, colour_conversation
from tests.waiting import wait_until_finished
from training.models import BaseModel, FineTuneJob, FineTuneStatus, MetricPoint

pytestmark = pytest.mark.django_db(transaction=True)

DPO = {"learning_rate": 1e-2, "epochs": 10, "max_steps": 12, "batch_size": 4, "gradient_accumulation": 1,
       "lora_dropout": 0.0, "eval_every_steps": 6, "checkpoint_every_steps": 0, "max_seq_length": 128,
       "warmup_ratio": 0.0, "dpo_beta": 0.5}  # fmt: skip


def test_edited_answers_become_pairs_a_snapshot_and_a_dpo_fine_tune(gpu_worker, project, tiny_model, key_client,
                                                                   client, owner, settings):  # fmt: skip
    settings.LOGTUNE_FINETUNE_MIN_TRAIN_ENTRIES = 1
    BaseModel.objects.create(name="tiny-llama", path=str(tiny_model))
    fruits = sorted(FRUITS)
    logged = [colour_conversation(fruits[i % len(fruits)], colour="blue") for i in range(24)]
    logs_ingest(project=project, items=[{**row, "metadata": {"n": i}} for i, row in enumerate(logged)])
    chat = DatasetFactory(project=project, name="Colours")
    dataset_add_logs(dataset=chat, logs=LogEntry.objects.filter(project=project))
    for entry in chat.entries.order_by("id"):  # a person corrects every answer
        fruit = entry.messages[1]["content"].split()[-1].rstrip("?")
        entry_update(entry=entry, messages=colour_conversation(fruit)["messages"])

    result = dataset_pairs_from_edits(source=chat, name="Colour pairs")
    pairs = result.dataset
    dataset_split(dataset=pairs, validation_ratio=0.25, seed=1)
    created = key_client.post("/api/v1/finetunes", {"dataset": pairs.pk, "base_model": "tiny-llama",
                                                    "hyperparameters": DPO}, format="json")  # fmt: skip
    assert created.status_code == 201, created.content
    job = wait_until_finished(FineTuneJob.objects.get(pk=created.json()["id"]), 300)

    assert (pairs.kind, result.added) == (DatasetKind.PREFERENCE, 24)
    assert job.status == FineTuneStatus.SUCCEEDED, job.error
    assert (job.hyperparameters["objective"], job.step, job.snapshot.rows_train) == ("dpo", 12, 18)
    rewards = job.summary["rewards"]
    assert [step for kind, step, _, _ in rewards if kind == "train"] == list(range(1, 13))
    assert [step for kind, step, _, _ in rewards if kind == "eval"] == [0, 6, 12]
    assert all(0 <= accuracy <= 1 for *_, accuracy in rewards)
    assert MetricPoint.objects.filter(job=job, train_loss__isnull=False).count() == 12

    client.force_login(owner)
    page = client.get(f"/p/acme/finetunes/{job.pk}/")
    assert page.status_code == 200
    assert page.context["reward_curves"]["eval"][0][0] == 0
    assert b"Reward margin" in page.content
