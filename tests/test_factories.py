"""Every model has a factory, and every factory makes a valid, saved row: a model change that breaks one fails
here, by name, rather than somewhere in a test that happened to use it."""

import factory
import pytest
from django.apps import apps

from curation.models import LogStatus, Role
from tests import factories

pytestmark = pytest.mark.django_db

FACTORIES = sorted(
    (
        value
        for value in vars(factories).values()
        if isinstance(value, type) and issubclass(value, factory.django.DjangoModelFactory) and value._meta.model
    ),
    key=lambda f: f.__name__,
)


def test_every_model_of_curation_and_training_has_a_factory():
    models = {model for app in ("curation", "training") for model in apps.get_app_config(app).get_models()}

    assert models - {f._meta.model for f in FACTORIES} == set()


@pytest.mark.parametrize("model_factory", FACTORIES, ids=lambda f: f.__name__)
def test_each_factory_makes_a_valid_saved_row(model_factory):
    row = model_factory()

    row.full_clean()
    assert type(row).objects.filter(pk=row.pk).exists()


def test_two_rows_of_a_factory_do_not_collide():
    for model_factory in FACTORIES:
        model_factory.create_batch(2)


def test_a_log_is_stored_as_the_logs_api_stores_an_openai_completion(project):
    log = factories.LogEntryFactory(project=project, prompt="Write to jane@example.com", tags=["mail"])

    assert (log.provider, log.format, log.model) == ("openai", "openai_chat", "gpt-4o-mini")
    assert log.status == LogStatus.SUCCESS
    assert log.messages == [
        {"role": "user", "content": "Write to jane@example.com"},
        {"role": "assistant", "content": "Here is the answer."},
    ]
    assert (log.prompt_tokens, log.total_tokens) == (20, 25)
    assert "jane@example.com" in log.search_text and log.pii == ["EMAIL"]
    assert [tag.name for tag in log.tags.all()] == ["mail"]


def test_a_log_with_an_error_status_is_stored_as_a_provider_error(project):
    log = factories.LogEntryFactory(project=project, status_code=500, completion="upstream timed out")

    assert (log.status, log.status_code, log.error_message) == (LogStatus.ERROR, 500, "upstream timed out")


def test_a_key_keeps_its_secret_on_the_row_and_authenticates_with_it(client, project):
    key = factories.ApiKeyFactory(project=project, role=Role.VIEWER)

    response = client.get("/api/v1/logs", HTTP_AUTHORIZATION=f"Bearer {key.raw}")

    assert response.status_code == 200
    assert key.raw.startswith(f"lt_{key.prefix}_")


def test_rows_below_a_parent_share_its_project(project):
    dataset = factories.DatasetFactory(project=project)

    job = factories.FineTuneJobFactory(dataset=dataset)
    loss = factories.ExampleLossFactory(job=job)

    assert job.project == job.snapshot.project == project
    assert loss.entry.dataset == dataset
    assert factories.LogTagFactory(log=factories.LogEntryFactory(project=project)).tag.project == project
