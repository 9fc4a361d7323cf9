"""Serving's world: the proxy's (a stand-in provider, the app on live_server, the acme project pointed at it), a
stand-in model server, and a fine-tune of acme deployed on it."""

from collections.abc import Iterator

import pytest
from django.utils import timezone

from curation.models import JobStatus
from tests.factories import DatasetFactory, FineTuneJobFactory
from tests.proxy.conftest import editor_key, proxied, stand_in  # noqa: F401 (fixtures)
from tests.serving.engine import Engine, start_engine
from training.models import Deployment, DeploymentStatus, FineTuneStatus, ModelServer
from training.models import Engine as EngineKind
from training.serving.router import serving_table_forget


@pytest.fixture
def engine() -> Iterator[Engine]:
    server = start_engine("base")
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _fresh_serving_table() -> Iterator[None]:
    serving_table_forget()
    yield
    serving_table_forget()


@pytest.fixture
def deployed(proxied, engine: Engine) -> Deployment:  # noqa: F811 (the fixture imported above)
    """Fine-tune `support-v1` of acme, serving on the stand-in model server (its adapter loaded there)."""
    job = FineTuneJobFactory(
        dataset=DatasetFactory(project=proxied, name="Support"), status=FineTuneStatus.SUCCEEDED,
        finished_at=timezone.now(),
    )  # fmt: skip
    assert job.snapshot.status == JobStatus.SUCCEEDED
    server = ModelServer.objects.create(
        supervisor="test:1", engine=EngineKind.VLLM, weights=job.model, url=engine.url, ready=True
    )
    deployment = Deployment.objects.create(
        project=proxied, job=job, name="support-v1", served_name="ft:acme/support-v1", status=DeploymentStatus.SERVING,
        engine=EngineKind.VLLM, server=server, serving_since=timezone.now(),
    )  # fmt: skip
    engine.adapters[deployment.served_name] = str(job.adapter_dir)
    return deployment
