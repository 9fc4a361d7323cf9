"""JSON bodies are read with the types the OpenAPI schema declares: DRF's fields would coerce "5" into 5, "true" or
0 into a boolean, 5 into a name, false into a ratio. A body in another encoding than JSON is refused, except the
file upload of an import."""

import pytest

from curation.models import Dataset
from tests.factories import TagFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("path", "body", "errors"),
    [
        ("/api/v1/datasets", {"name": 5}, {"name": ["Must be a string."]}),
        ("/api/v1/datasets/{dataset}/split", {"validation_ratio": False}, {"validation_ratio": ["Must be a number."]}),
        ("/api/v1/datasets/{dataset}/split", {"validation_ratio": 0.2, "seed": "5"},
         {"seed": ["Must be an integer."]}),
        ("/api/v1/datasets/{dataset}/redact", {"dry_run": "true"}, {"dry_run": ["Must be true or false."]}),
        ("/api/v1/datasets/{dataset}/redact", {"kinds": "EMAIL"}, {"kinds": ["Must be a list."]}),
        ("/api/v1/logs/bulk", {"action": "delete", "log_ids": ["1"]}, {"log_ids": ["Item 0: Must be an integer."]}),
        ("/api/v1/logs/bulk", {"action": "delete", "log_ids": [True]}, {"log_ids": ["Item 0: Must be an integer."]}),
        ("/api/v1/tags/{tag}/merge", {"into": 10**19},
         {"into": [f"Ensure this value is less than or equal to {10**18 - 1}."]}),
    ],
)  # fmt: skip
def test_a_value_of_another_json_type_than_declared_is_a_400_naming_it(key_client, project, dataset, path, body,
                                                                        errors):  # fmt: skip
    url = path.format(dataset=dataset.pk, tag=TagFactory(project=project).pk)

    response = key_client.post(url, body, format="json")

    assert response.status_code == 400, response.content
    assert response.json() == errors


def test_an_integer_written_as_a_whole_float_is_an_integer(key_client, dataset):
    response = key_client.post(f"/api/v1/datasets/{dataset.pk}/split", {"validation_ratio": 0, "seed": 7.0},
                               format="json")  # fmt: skip

    assert response.status_code == 200, response.content
    assert response.json()["seed"] == 7


def test_a_form_encoded_body_is_refused(key_client, dataset):
    form = key_client.post("/api/v1/datasets", {"name": "Form"}, format="multipart")

    assert form.status_code == 415
    assert not Dataset.objects.filter(name="Form").exists()
