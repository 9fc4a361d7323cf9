"""The serving supervisor against a stand-in vLLM (tests/serving/engine.py run as the vLLM command): one server per
base model, adapters loaded and unloaded at run time, a server that dies restarted, one serving nothing stopped."""

import json
import os
import signal
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.utils import timezone

from tests.factories import BaseModelFactory, DatasetFactory, FineTuneJobFactory
from training.models import Deployment, DeploymentStatus, Engine, FineTuneStatus, ModelServer
from training.serving.services import deployment_stop
from training.serving.supervisor import Supervisor

ENGINE_PROGRAM = Path(__file__).with_name("engine.py")


@pytest.fixture
def stand_in_vllm(settings, tmp_path, monkeypatch) -> Path:
    record = tmp_path / "engine.jsonl"
    monkeypatch.setenv("STANDIN_ENGINE_RECORD", str(record))
    settings.LOGTUNE_VLLM_COMMAND = f"{sys.executable} {ENGINE_PROGRAM}"
    settings.LOGTUNE_SERVING_FIRST_PORT = 18300 + os.getpid() % 500
    settings.VAR_DIR = tmp_path
    return record


def deploy(project, base, name: str) -> Deployment:
    job = FineTuneJobFactory(
        dataset=DatasetFactory(project=project), base_model=base, status=FineTuneStatus.SUCCEEDED,
        finished_at=timezone.now(),
    )  # fmt: skip
    return Deployment.objects.create(project=project, job=job, name=name, served_name=f"ft:acme/{name}")


def rounds_until(supervisor: Supervisor, condition, seconds: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        supervisor.round()
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"not reached in {seconds}s")


def served_models(server: ModelServer) -> set[str]:
    return {model["id"] for model in httpx.get(f"{server.url}/models", timeout=5).json()["data"]}


def statuses() -> dict[str, str]:
    return dict(Deployment.objects.values_list("name", "status"))


def test_the_supervisor_serves_every_adapter_of_a_base_on_one_server_and_follows_the_deployments(
    project, stand_in_vllm: Path
):
    base = BaseModelFactory(name="tiny-base", path="/models/tiny-base")
    first, second = deploy(project, base, "one"), deploy(project, base, "two")
    supervisor = Supervisor(engine=Engine.VLLM)
    try:
        rounds_until(supervisor, lambda: set(statuses().values()) == {DeploymentStatus.SERVING})

        (server,) = ModelServer.objects.all()
        assert server.engine == Engine.VLLM and server.weights == "/models/tiny-base" and server.ready
        assert served_models(server) == {"base", "ft:acme/one", "ft:acme/two"}
        started = json.loads(stand_in_vllm.read_text().splitlines()[0])
        argv = started["argv"]
        assert argv[:2] == ["serve", "/models/tiny-base"] and "--enable-lora" in argv
        assert argv[argv.index("--max-loras") + 1] == "8" and argv[argv.index("--max-lora-rank") + 1] == "64"
        assert started["env"]["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
        loads = [json.loads(line) for line in stand_in_vllm.read_text().splitlines()[1:]]
        loaded = {(r["body"]["lora_name"], r["body"]["lora_path"]) for r in loads if "load_lora" in r.get("path", "")}
        assert loaded == {("ft:acme/one", str(first.job.adapter_dir)), ("ft:acme/two", str(second.job.adapter_dir))}

        deployment_stop(deployment=first)
        rounds_until(supervisor, lambda: served_models(server) == {"base", "ft:acme/two"})
        assert ModelServer.objects.count() == 1

        os.killpg(server.pid, signal.SIGKILL)  # the engine dies: it is started again, and its adapter loaded again
        rounds_until(supervisor, lambda: ModelServer.objects.get().restarts == 1 and statuses()["two"] == "serving")
        server.refresh_from_db()
        assert served_models(server) == {"base", "ft:acme/two"}

        deployment_stop(deployment=second)
        rounds_until(supervisor, lambda: not ModelServer.objects.exists())
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{server.url}/models", timeout=2)
    finally:
        supervisor.stop()


def test_a_stopped_supervisor_hands_its_deployments_back_for_another_to_claim(project, stand_in_vllm: Path):
    deploy(project, BaseModelFactory(), "one")
    supervisor = Supervisor(engine=Engine.VLLM)
    rounds_until(supervisor, lambda: statuses()["one"] == DeploymentStatus.SERVING)
    supervisor.stop()
    deployment = Deployment.objects.get()
    assert deployment.status == DeploymentStatus.PENDING and deployment.server is None
    assert not ModelServer.objects.exists()


def test_a_server_whose_supervisor_went_silent_is_released(project, stand_in_vllm: Path):
    deployment = deploy(project, BaseModelFactory(), "one")
    gone = ModelServer.objects.create(
        supervisor="elsewhere:1", engine=Engine.VLLM, weights="/m", url="http://10.0.0.9:8300/v1", ready=True,
        heartbeat_at=timezone.now() - timezone.timedelta(minutes=5),
    )  # fmt: skip
    Deployment.objects.filter(pk=deployment.pk).update(server=gone, status=DeploymentStatus.SERVING)
    supervisor = Supervisor(engine=Engine.VLLM)
    try:
        rounds_until(supervisor, lambda: Deployment.objects.get().server_id not in (None, gone.pk))
        assert not ModelServer.objects.filter(pk=gone.pk).exists()
    finally:
        supervisor.stop()


def test_a_full_fine_tune_gets_a_server_of_its_own_answering_to_its_name(project, stand_in_vllm: Path, settings):
    settings.LOGTUNE_VLLM_ARGS = "--gpu-memory-utilization 0.5"
    deployment = deploy(project, BaseModelFactory(), "full")
    deployment.job.method = "full"
    deployment.job.save()
    supervisor = Supervisor(engine=Engine.VLLM)
    try:
        rounds_until(supervisor, lambda: statuses()["full"] == DeploymentStatus.SERVING)
        server = ModelServer.objects.get()
        assert server.weights == str(deployment.job.adapter_dir)
        assert served_models(server) == {"ft:acme/full"}
        argv = json.loads(stand_in_vllm.read_text().splitlines()[0])["argv"]
        assert "--enable-lora" not in argv and argv[-2:] == ["--gpu-memory-utilization", "0.5"]
    finally:
        supervisor.stop()
