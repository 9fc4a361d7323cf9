"""A deployed fine-tune as a model endpoint (a judge, a teacher, a generator): called where its server runs."""

import pytest
from django.core.exceptions import ValidationError

from training.endpoints.services import EndpointFields, EndpointRefused, endpoint_check, endpoint_create
from training.models import DeploymentStatus


def test_an_endpoint_naming_a_deployed_fine_tune_calls_its_model_server(deployed, engine, owner):
    endpoint = endpoint_create(
        project=deployed.project, fields=EndpointFields(name="our model", base_url="", model="ft:acme/support-v1"),
        actor=owner,
    )  # fmt: skip

    answer = endpoint_check(endpoint)

    assert answer.error == "" and answer.text == "ft:acme/support-v1: Reply with the word OK."
    assert engine.requests[-1]["body"]["model"] == "ft:acme/support-v1"


def test_a_deployed_fine_tune_takes_no_url_and_must_be_serving(deployed, owner):
    with pytest.raises(ValidationError, match="Leave it empty"):
        endpoint_create(project=deployed.project, fields=EndpointFields(
            name="x", base_url="http://evil.example/v1", model="ft:acme/support-v1"), actor=owner)  # fmt: skip
    endpoint = endpoint_create(
        project=deployed.project, fields=EndpointFields(name="y", base_url="", model="ft:acme/support-v1"), actor=owner
    )
    deployed.status = DeploymentStatus.STOPPED
    deployed.save()
    with pytest.raises(EndpointRefused, match="not serving"):
        endpoint_check(endpoint)


def test_an_ordinary_endpoint_still_needs_its_url(project, owner):
    with pytest.raises(ValidationError) as refused:
        endpoint_create(
            project=project, fields=EndpointFields(name="z", base_url="", model="gpt-4o-mini"), actor=owner
        )
    assert "base_url" in refused.value.message_dict
