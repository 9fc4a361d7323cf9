"""A fine-tune submitted while the broker is down: the web app answers at once, the job is kept queued and
marked unsent, and the reaper hands it to the GPU queue once the broker is back."""

import pytest
import redis
from django.conf import settings

from tests.faults.processes import free_port, post_json, service_env, wait_until_serving, web_command
from training.finetunes.runner import finetune_reap
from training.models import FineTuneJob, FineTuneStatus

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


def test_a_fine_tune_submitted_while_the_broker_is_down_is_kept_and_sent_by_the_reaper(
    redis_broker_url, dataset, base_model, api_key, spawn, tmp_path
):
    nothing_there = f"redis://127.0.0.1:{free_port()}/0"
    port = free_port()
    web = spawn("web", web_command(port), service_env(tmp_path / "var", broker=nothing_there))
    wait_until_serving(f"http://127.0.0.1:{port}", web)
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete("gpu")

    answer = post_json(f"http://127.0.0.1:{port}/api/v1/finetunes", {"dataset": dataset.pk, "base_model": "tiny"},
                       api_key)  # fmt: skip

    assert answer.status == 201, answer.body
    assert answer.seconds < 10
    job = FineTuneJob.objects.get(pk=answer.json()["id"])
    assert (job.status, job.enqueued_at) == (FineTuneStatus.QUEUED, None)
    assert broker.llen("gpu") == 0

    assert finetune_reap() == 1  # this process's broker is up: the job is sent to the GPU queue
    assert finetune_reap() == 0  # and only once

    job.refresh_from_db()
    assert job.status == FineTuneStatus.QUEUED and job.enqueued_at is not None
    assert broker.llen("gpu") == 1
    broker.delete("gpu")
