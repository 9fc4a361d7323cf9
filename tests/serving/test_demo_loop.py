"""The whole loop on a laptop: a fine-tune of a tiny local model deployed past the gate by its owner, the serving
supervisor starting the small transformers server and loading the adapter, and the official openai SDK calling it
through the proxy, by name and through a canary route, streamed and not; logs stored by a real worker."""

import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from django.utils import timezone

from curation.models import LogEntry
from tests.factories import DatasetFactory, FineTuneJobFactory
from tests.proxy.conftest import PROVIDER_KEY
from tests.training.tiny import build_tiny_model
from training.models import DeploymentStatus, Engine, FineTuneStatus, ProxyRoute, RouteCall, RouteMode, Side
from training.serving.services import deployment_create
from training.serving.supervisor import Supervisor

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def make_adapter(base: Path, folder: Path) -> None:
    """A LoRA adapter whose B matrices are not zero, so that it changes the base's answers."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(3)
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM")
    get_peft_model(AutoModelForCausalLM.from_pretrained(base), config).save_pretrained(folder)


@pytest.fixture
def supervisor(settings, tmp_path, monkeypatch) -> Iterator[Supervisor]:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # two cores: the engine must leave one to the test's server
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    settings.VAR_DIR = tmp_path
    settings.LOGTUNE_SERVING_FIRST_PORT = 19300
    running = Supervisor(engine=Engine.TRANSFORMERS)
    yield running
    running.stop()


def test_a_team_deploys_its_fine_tune_and_calls_it_through_the_proxy(
    live_server, celery_worker, proxied, stand_in, editor_key, owner, tiny, supervisor
):
    job = FineTuneJobFactory(
        dataset=DatasetFactory(project=proxied), model=str(tiny), status=FineTuneStatus.SUCCEEDED,
        finished_at=timezone.now(),
    )  # fmt: skip
    make_adapter(tiny, job.adapter_dir)
    deployment = deployment_create(job=job, name="tiny-v1", force=True, reason="a demo, not evaluated", actor=owner)
    assert deployment.forced and deployment.served_name == "ft:acme/tiny-v1"

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        supervisor.round()
        deployment.refresh_from_db()
        if deployment.status in (DeploymentStatus.SERVING, DeploymentStatus.FAILED):
            break
        time.sleep(0.5)
    assert deployment.status == DeploymentStatus.SERVING, deployment.error

    sdk = openai.OpenAI(
        base_url=f"{live_server.url}/proxy/openai/v1", api_key=PROVIDER_KEY,
        default_headers={"X-Logtune-Key": editor_key}, max_retries=0, timeout=120,
    )  # fmt: skip
    question = [{"role": "user", "content": "What colour is a lime?"}]
    try:
        answer = sdk.chat.completions.create(model="ft:acme/tiny-v1", messages=question, max_tokens=6, temperature=0)
        text = answer.choices[0].message.content
        stream = sdk.chat.completions.create(
            model="ft:acme/tiny-v1", messages=question, max_tokens=6, temperature=0, stream=True
        )
        streamed = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        ProxyRoute.objects.create(project=proxied, name="all", deployment=deployment, mode=RouteMode.CANARY)
        from training.serving.router import serving_table_forget

        serving_table_forget()
        routed = sdk.chat.completions.create(model="gpt-4o-mini", messages=question, max_tokens=6, temperature=0)
    finally:
        sdk.close()

    assert answer.model == "ft:acme/tiny-v1" and answer.usage.completion_tokens > 0 and text
    assert streamed == text  # greedy: the same tokens, streamed
    assert routed.choices[0].message.content == text and stand_in.seen == []
    deadline = time.monotonic() + 30
    while LogEntry.objects.filter(project=proxied).count() < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    logs = list(LogEntry.objects.filter(project=proxied).order_by("id"))
    assert len(logs) == 3 and all(log.status == "success" for log in logs)
    assert all("model:ft:acme/tiny-v1" in set(log.tags.values_list("name", flat=True)) for log in logs)
    assert RouteCall.objects.get().served_by == Side.FINETUNE
