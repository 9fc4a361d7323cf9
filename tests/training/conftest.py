"""Fine-tune fixtures: a queued job (of tests/conftest.py's dataset and base model), a tiny local model, a
GPU-queue worker, and a fake trainer that honours the trainer's contract (docs/training.md) in a fraction of a
second, for the worker's side."""

import json
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection

from tests.training.tiny import build_tiny_model
from training.finetunes import runner
from training.finetunes.services import finetune_create
from training.models import FineTuneJob

# Writes what the real trainer writes, driven by `extra.fake` of its config: ok, error, crash, slow (until
# cancelled), stubborn (ignores CANCEL and SIGTERM). Resumes from its newest checkpoint like the real one.
FAKE_TRAINER = textwrap.dedent("""
    import json, os, signal, sys, time
    from pathlib import Path

    config = json.loads(Path(sys.argv[1]).read_text())
    out = Path(config["output_dir"])
    mode = config["extra"].get("fake", "ok")
    with (out / "pids").open("a") as pids:
        pids.write(f"{os.getpid()}\\n")
    events = (out / "events.jsonl").open("a")

    def emit(kind, **fields):
        events.write(json.dumps({"type": kind, "time": time.time(), **fields}) + "\\n")
        events.flush()

    checkpoints = sorted(int(p.name[5:]) for p in (out / "checkpoints").glob("step-*"))
    resumed = checkpoints[-1] if checkpoints else 0
    total = config["max_steps"] or 5
    delay = 0.3 if mode in ("slow", "stubborn") else 0.02
    emit("start", examples_train=2, examples_validation=1, tokens_train=40, trained_tokens_train=12, dropped=0,
         total_steps=total, steps_per_epoch=total, world_size=1, device="cpu", precision="fp32",
         trainable_params=10, total_params=100, resumed_from_step=resumed)
    if mode == "error":
        emit("error", message="example 3 has no trained token: its assistant turn is empty")
        sys.exit(1)
    if mode == "crash":
        print(f"Saving a checkpoint in {out}/checkpoints/step-1", flush=True)
        print("Traceback (most recent call last):\\nRuntimeError: out of memory", file=sys.stderr, flush=True)
        sys.exit(3)
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    emit("eval", step=resumed, eval_loss=2.0, perplexity=7.39)
    step = resumed
    while step < total:
        if (out / "CANCEL").exists() and mode != "stubborn":
            emit("cancelled", step=step)
            sys.exit(0)
        time.sleep(delay)
        step += 1
        emit("step", step=step, total_steps=total, epoch=step / total, loss=2.0 / step, learning_rate=1e-4 * step,
             grad_norm=1.0, tokens_per_second=100.0, elapsed_s=step * delay, eta_s=(total - step) * delay)
        (out / "checkpoints" / f"step-{step}").mkdir(parents=True, exist_ok=True)
    emit("eval", step=step, eval_loss=1.0, perplexity=2.718)
    adapter = out / "adapter"
    adapter.mkdir(exist_ok=True)
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.safetensors").write_bytes(bytes(2000))
    (out / "evaluation.json").write_text(json.dumps({
        "base": {"eval_loss": 2.0, "perplexity": 7.39}, "tuned": {"eval_loss": 1.0, "perplexity": 2.72},
        "generations": [{"entry_id": None, "prompt": [{"role": "user", "content": "q"}], "reference": "a",
                         "base": "?", "tuned": "a"}]}))
    rows = [json.loads(line) for line in Path(config["data_path"]).read_text().splitlines()]
    with (out / "example_losses.jsonl").open("w") as losses:
        for line, row in enumerate(rows, 1):
            if row.get("split", "train") == "train":
                losses.write(json.dumps({"line": line, "entry_id": row.get("entry_id"), "loss": line / 10,
                                         "tokens": 3}) + "\\n")
    emit("done", step=step, train_loss=0.4, eval_loss=1.0, adapter_dir=str(adapter), seconds=1.0)
""")


@pytest.fixture
def job(dataset, base_model, owner) -> FineTuneJob:
    """A fine-tune the owner queued on the Math dataset, four steps long."""
    return finetune_create(dataset=dataset, base_model=base_model, hyperparameters={"max_steps": 4}, created_by=owner)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny chat model built locally (tests/training/tiny.py), once per module."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def fake_trainer(tmp_path, monkeypatch) -> Path:
    """The worker launches the fake trainer (through the real accelerate launcher) instead of training.trainer."""
    folder = tmp_path / "fake"
    folder.mkdir()
    (folder / "fake_trainer.py").write_text(FAKE_TRAINER)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")])))
    monkeypatch.setattr(runner, "TRAINER_MODULE", "fake_trainer")
    return folder


def _purge(app, queue: str) -> None:
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(queue)


@pytest.fixture
def gpu_worker(celery_session_app, transactional_db: None) -> Iterator[object]:
    """A real Celery worker (in a thread of this process) on the `gpu` queue, where fine-tunes, merges and
    playground answers go. Tests using it see committed data only, hence transactional_db."""
    from celery.contrib.testing.worker import start_worker

    _purge(celery_session_app, "gpu")
    with start_worker(
        celery_session_app, pool="solo", perform_ping_check=False, queues=["gpu"], shutdown_timeout=60
    ) as worker:
        yield worker


def worker_env(tmp_path: Path, media_root: Path) -> dict[str, str]:
    """The environment of a worker subprocess that shares this test's database, broker and media folder."""
    from django.conf import settings

    database = connection.settings_dict
    login = database["USER"] + (f":{database['PASSWORD']}" if database["PASSWORD"] else "")
    url = f"postgres://{login}@{database['HOST'] or '127.0.0.1'}:{database['PORT'] or 5432}/{database['NAME']}"
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.test_settings",
        "TEST_DATABASE_URL": url,
        "TEST_BROKER_URL": settings.CELERY_BROKER_URL,
        "MEDIA_ROOT": str(media_root),
        "LOGTUNE_VAR_DIR": str(tmp_path / "worker-var"),
    }


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())
