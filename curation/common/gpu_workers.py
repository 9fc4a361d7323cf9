"""Whether a GPU worker could take an embedding job now, so that it goes to the gpu queue rather than the default one.

A Celery worker that consumes the `gpu` queue and sees a CUDA device says so in the cache every HEARTBEAT_S seconds
while it has a free slot (fewer tasks received or running than its concurrency), and takes the word back as soon
as it has none: a fine-tune holds a GPU worker for hours, and an embedding job sent behind it would wait that
long, when the CPU workers finish it in minutes. The choice is made when the task is sent (`embedding_queue`): a
worker that started a fine-tune a moment later can still hold one job behind it, no more. The cache must be one
that every process shares (Redis, CACHE_URL): with the embedded per-process cache the web never sees the
heartbeat, and jobs go to the default queue as they always did. LOGTUNE_EMBED_QUEUE=default or gpu sets the
queue outright.
"""

import logging
import threading
import time

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

logger = logging.getLogger(__name__)

GPU_QUEUE = "gpu"
HEARTBEAT_KEY = "logtune:gpu-worker-free"
HEARTBEAT_S = 20
# A heartbeat lives this long in the cache: a worker that died, or lost its GPU, stops being chosen within a minute.
HEARTBEAT_TTL_S = 60
POLL_S = 2.0  # how soon a worker that took a task takes its word back


def embedding_queue() -> str:
    """The queue an embedding job is sent to now: LOGTUNE_EMBED_QUEUE, and for `auto` the gpu queue while a GPU worker
    has said, within HEARTBEAT_TTL_S, that it has a free slot; else the default queue."""
    chosen = settings.LOGTUNE_EMBED_QUEUE
    if chosen == "auto":
        return GPU_QUEUE if gpu_worker_free() else settings.CELERY_TASK_DEFAULT_QUEUE
    return GPU_QUEUE if chosen == GPU_QUEUE else settings.CELERY_TASK_DEFAULT_QUEUE


def gpu_worker_free() -> bool:
    """Whether a GPU worker's heartbeat is in the cache. A cache that cannot be read says no (CPU workers then)."""
    try:
        return cache.get(HEARTBEAT_KEY) is not None
    except Exception as exc:  # a Redis that is down or hangs: the default queue always works
        logger.warning("gpu_workers.heartbeat_unreadable: %s", exc)
        return False


def gpu_worker_heartbeat(*, worker: str, free: bool) -> None:
    """Say that `worker` has a free slot (for HEARTBEAT_TTL_S), or take its word back when it has none."""
    if free:
        cache.set(HEARTBEAT_KEY, {"worker": worker, "at": timezone.now().isoformat()}, timeout=HEARTBEAT_TTL_S)
        return
    current = cache.get(HEARTBEAT_KEY)
    if current is not None and current.get("worker") == worker:
        cache.delete(HEARTBEAT_KEY)


def cuda_present() -> bool:
    """Whether this machine has a CUDA device torch can use, asked through NVML: CUDA initialised in a prefork worker's
    main process could not be used by the pool processes forked from it, and `torch.cuda.is_available()` initialises
    it. Any trouble with NVML reads as no."""
    import torch

    try:
        return bool(torch.cuda._is_compiled() and torch.cuda._device_count_nvml() > 0)
    except Exception:  # private API, and a driver's errors: no GPU as far as embeddings are concerned
        return False


def gpu_worker_heartbeat_start(
    *, worker: str, queues: set[str], concurrency: int, stop: threading.Event | None = None
) -> threading.Thread | None:
    """In a worker's main process once it is ready: when it consumes the gpu queue and has a CUDA device, a daemon
    thread writes its heartbeat while it has a free slot, until `stop` is set (never, in a worker). Returns the
    thread, or None for the workers of other queues."""
    if GPU_QUEUE not in queues:
        return None
    arguments = {"worker": worker, "concurrency": concurrency, "stop": stop or threading.Event()}
    thread = threading.Thread(target=_heartbeat_loop, kwargs=arguments, daemon=True, name="gpu-worker-heartbeat")
    thread.start()
    return thread


def _heartbeat_loop(*, worker: str, concurrency: int, stop: threading.Event) -> None:
    from celery.worker import state

    if not cuda_present():
        logger.info("gpu_workers.no_cuda worker=%s: embedding jobs stay on the default queue", worker)
        return
    logger.info("gpu_workers.heartbeat_started worker=%s", worker)
    was_free, written_at = False, 0.0
    while not stop.is_set():
        # Received counts as taken: a task the worker holds but has not started yet runs before anything sent now.
        free = len(set(state.reserved_requests) | set(state.active_requests)) < concurrency
        if free != was_free or (free and time.monotonic() - written_at >= HEARTBEAT_S):
            try:
                gpu_worker_heartbeat(worker=worker, free=free)
                was_free, written_at = free, time.monotonic()
            except Exception as exc:  # the cache is down: try again next time round
                logger.warning("gpu_workers.heartbeat_failed: %s", exc)
        stop.wait(POLL_S)
    gpu_worker_heartbeat(worker=worker, free=False)
