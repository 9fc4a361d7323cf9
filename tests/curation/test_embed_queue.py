"""Embedding jobs go to the gpu queue while a GPU worker says it is free, else to the default queue; the choice is
made when the task is sent, and LOGTUNE_EMBED_QUEUE can set it outright."""

import threading
import time
from types import SimpleNamespace

import pytest
from django.core.cache import cache

from config.celery import gpu_worker_heartbeat_start as on_worker_ready
from curation.common import gpu_workers
from curation.common.gpu_workers import (
    HEARTBEAT_KEY,
    embedding_queue,
    gpu_worker_heartbeat,
    gpu_worker_heartbeat_start,
)
from curation.datasets.dedup.services import embedding_job_create
from curation.datasets.dedup.tasks import dataset_embed_task
from curation.datasets.services import dataset_create
from curation.logs.similar.services import log_embedding_job_create
from curation.logs.similar.tasks import project_embed_logs_task


@pytest.fixture(autouse=True)
def no_heartbeat():
    cache.delete(HEARTBEAT_KEY)
    yield
    cache.delete(HEARTBEAT_KEY)


@pytest.fixture
def sent(monkeypatch) -> list[tuple[str, tuple, str]]:
    """(task, args, queue) of every embedding task sent."""
    calls: list[tuple[str, tuple, str]] = []
    for task in (dataset_embed_task, project_embed_logs_task):
        monkeypatch.setattr(
            task, "apply_async", lambda args, queue, name=task.name: calls.append((name, tuple(args), queue))
        )
    return calls


class Running:
    """A request the worker is running (its state keeps weak references)."""


def wait_for(condition, seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {seconds}s")
        time.sleep(0.02)


def test_without_a_gpu_worker_embedding_jobs_go_to_the_default_queue(
    project, sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        entries = embedding_job_create(dataset=dataset_create(project=project, name="support"))
        logs = log_embedding_job_create(project=project)

    assert sent == [
        ("curation.tasks.dataset_embed_task", (entries.pk,), "default"),
        ("curation.tasks.project_embed_logs_task", (logs.pk,), "default"),
    ]


def test_with_a_free_gpu_worker_embedding_jobs_go_to_the_gpu_queue(project, sent, django_capture_on_commit_callbacks):
    gpu_worker_heartbeat(worker="gpu@box", free=True)

    with django_capture_on_commit_callbacks(execute=True):
        entries = embedding_job_create(dataset=dataset_create(project=project, name="support"))
        logs = log_embedding_job_create(project=project)

    assert sent == [
        ("curation.tasks.dataset_embed_task", (entries.pk,), "gpu"),
        ("curation.tasks.project_embed_logs_task", (logs.pk,), "gpu"),
    ]


def test_a_gpu_worker_that_took_a_task_is_no_longer_chosen():
    gpu_worker_heartbeat(worker="gpu@box", free=True)
    gpu_worker_heartbeat(worker="gpu@other", free=False)  # another worker's word is not taken back
    assert embedding_queue() == "gpu"

    gpu_worker_heartbeat(worker="gpu@box", free=False)

    assert embedding_queue() == "default"


def test_a_heartbeat_older_than_a_minute_is_gone(monkeypatch):
    written: dict[str, object] = {}
    monkeypatch.setattr(gpu_workers.cache, "set", lambda key, value, timeout: written.update(timeout=timeout))

    gpu_worker_heartbeat(worker="gpu@box", free=True)

    assert written["timeout"] == gpu_workers.HEARTBEAT_TTL_S == 60


def test_a_cache_that_cannot_be_read_means_the_default_queue(monkeypatch):
    def down(key):
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(gpu_workers.cache, "get", down)

    assert embedding_queue() == "default"


@pytest.mark.parametrize(("setting", "heartbeat", "expected"), [
    ("default", True, "default"), ("gpu", False, "gpu"), ("auto", False, "default"), ("auto", True, "gpu"),
])  # fmt: skip
def test_the_queue_setting_decides_outright_unless_auto(settings, setting, heartbeat, expected):
    settings.LOGTUNE_EMBED_QUEUE = setting
    if heartbeat:
        gpu_worker_heartbeat(worker="gpu@box", free=True)

    assert embedding_queue() == expected


def test_a_gpu_queue_worker_with_cuda_says_when_it_is_free(monkeypatch):
    from celery.worker import state

    monkeypatch.setattr(gpu_workers, "cuda_present", lambda: True)
    monkeypatch.setattr(gpu_workers, "POLL_S", 0.01)
    stop = threading.Event()
    thread = gpu_worker_heartbeat_start(worker="gpu@box", queues={"gpu"}, concurrency=1, stop=stop)
    assert thread is not None
    try:
        wait_for(lambda: embedding_queue() == "gpu")
        for held in (state.reserved_requests, state.active_requests):  # received, then running
            task = Running()
            held.add(task)
            try:
                wait_for(lambda: embedding_queue() == "default")
            finally:
                held.discard(task)
            wait_for(lambda: embedding_queue() == "gpu")
    finally:
        stop.set()
        thread.join(5)
    assert embedding_queue() == "default"  # a worker that stops takes its word back


def test_workers_of_other_queues_or_without_cuda_say_nothing(monkeypatch):
    assert gpu_worker_heartbeat_start(worker="default@box", queues={"default"}, concurrency=2) is None
    monkeypatch.setattr(gpu_workers, "cuda_present", lambda: False)

    thread = gpu_worker_heartbeat_start(worker="gpu@box", queues={"gpu"}, concurrency=1)
    assert thread is not None
    thread.join(5)

    assert not thread.is_alive() and embedding_queue() == "default"


def test_the_worker_ready_signal_starts_the_heartbeat_of_a_gpu_queue_worker(monkeypatch):
    started: list[dict] = []
    monkeypatch.setattr(gpu_workers, "gpu_worker_heartbeat_start", lambda **kwargs: started.append(kwargs))
    queues = SimpleNamespace(consume_from={"gpu": object()})
    app = SimpleNamespace(amqp=SimpleNamespace(queues=queues))
    consumer = SimpleNamespace(hostname="gpu@box", app=app, pool=SimpleNamespace(num_processes=1))

    on_worker_ready(sender=consumer)

    assert started == [{"worker": "gpu@box", "queues": {"gpu"}, "concurrency": 1}]
