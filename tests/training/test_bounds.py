"""Every numeric fine-tune setting has a sane upper bound, and `attn_implementation` is one of a list: a LoRA rank of
2^40, 10^9 new tokens or a kernel name that makes a GPU worker fetch code from the Hub are refused naming the field,
by the API, the form, the playground and the trainer's own config."""

import types
import typing
from dataclasses import fields

import pytest

from training.models import FineTuneJob, FineTuneStatus, Generation
from training.trainer.config import ATTENTION_IMPLEMENTATIONS, LIMITS, ConfigError, TrainConfig

pytestmark = pytest.mark.django_db

HOSTILE = [
    ("lora_rank", 2**40, "must be from 1 to 1024"),
    ("max_new_tokens", 10**9, "must be from 1 to 4096"),
    ("max_seq_length", 10**9, "must be from 16 to 131072"),
    ("epochs", 1e9, "must be from 0 to 100"),
    ("batch_size", 10**6, "must be from 1 to 1024"),
    ("eval_generations", 10**6, "must be from 0 to 100"),
    ("seed", -1, "must be from 0 to 4294967295"),
    ("keep_checkpoints", 0, "must be from 1 to 100"),
    ("attn_implementation", "kernels-community/flash-attn",
     "must be one of eager, sdpa, flash_attention_2, flash_attention_3"),
]  # fmt: skip


def _numeric(annotation: object) -> bool:
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    kinds = typing.get_args(annotation) if union else (annotation,)
    return any(kind in (int, float) for kind in kinds)


def test_every_numeric_setting_has_bounds():
    numeric = {f.name for f in fields(TrainConfig) if _numeric(f.type)}

    assert numeric == set(LIMITS)
    assert ATTENTION_IMPLEMENTATIONS == ("eager", "sdpa", "flash_attention_2", "flash_attention_3")


@pytest.mark.parametrize(("name", "value", "message"), HOSTILE)
def test_the_trainers_config_refuses_a_value_past_its_bounds(name, value, message):
    with pytest.raises(ConfigError) as refused:
        TrainConfig(model="m", data_path="d.jsonl", output_dir="out", **{name: value})

    assert str(refused.value) == f"{name}: {message}"


@pytest.mark.parametrize("endpoint", ["/api/v1/finetunes", "/api/v1/finetunes/estimate"])
@pytest.mark.parametrize(("name", "value", "message"), HOSTILE)
def test_the_api_refuses_a_setting_past_its_bounds_naming_it(key_client, dataset, base_model, endpoint, name, value,
                                                             message):  # fmt: skip
    body = {"dataset": dataset.pk, "base_model": "tiny", "hyperparameters": {name: value}}

    response = key_client.post(endpoint, body, format="json")

    assert response.status_code == 400, response.content
    assert response.json() == {"hyperparameters": {name: [message]}}
    assert not FineTuneJob.objects.exists()


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("lora_rank", str(2**40), "must be from 1 to 1024"),
        ("max_new_tokens", str(10**9), "must be from 1 to 4096"),
        ("attn_implementation", "kernels-community/flash-attn",
         "Select a valid choice. kernels-community/flash-attn is not one of the available choices."),
    ],
)  # fmt: skip
def test_the_form_refuses_a_setting_past_its_bounds_on_its_field(client, editor, dataset, base_model, name, value,
                                                                 error):  # fmt: skip
    client.force_login(editor)
    page = client.get(f"/p/acme/datasets/{dataset.pk}/finetune/")
    form = {field.html_name: field.value() for field in page.context["form"]}
    form = {name: value for name, value in form.items() if value is not None and value is not False}

    response = client.post(f"/p/acme/datasets/{dataset.pk}/finetune/", {**form, "base_model": "tiny", name: value})

    assert response.status_code == 400
    assert response.context["form"].errors[name] == [error]
    assert not FineTuneJob.objects.exists()
    assert 'name="lora_rank" value="16" min="1" max="1024"' in page.content.decode()


def test_the_playground_refuses_too_many_new_tokens_naming_the_field(key_client, dataset, base_model):
    from training.finetunes.services import finetune_create

    job = finetune_create(dataset=dataset, base_model=base_model, hyperparameters={"max_steps": 1})
    FineTuneJob.objects.filter(pk=job.pk).update(status=FineTuneStatus.SUCCEEDED)

    response = key_client.post(f"/api/v1/finetunes/{job.pk}/generate", {"prompt": "Hi", "max_new_tokens": 10**9},
                               format="json")  # fmt: skip

    assert response.status_code == 400
    assert response.json() == {"max_new_tokens": ["Ensure this value is less than or equal to 1024."]}
    assert not Generation.objects.exists()
