"""Model endpoints: the client (bounded concurrency, retries, one failure alone), keys encrypted at rest and
never shown, hosts limited, roles, the page, the check, and what calls cost. Every call goes to a stand-in
server started by the test."""

from decimal import Decimal

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command

from curation.models import AuditEvent
from tests.chat_stand_in import start_chat_stand_in
from training.endpoints.client import EndpointTarget, chat_many
from training.endpoints.secrets import SecretUnreadable, secret_decrypt, secret_encrypt
from training.endpoints.services import EndpointFields, endpoint_cost_usd, endpoint_create, endpoint_target
from training.models import ModelEndpoint

SECRET = "sk-test-0123456789abcdef"


@pytest.fixture
def stand_in():
    server = start_chat_stand_in(answer=lambda body: "echo: " + body["messages"][-1]["content"])
    yield server
    server.close()


@pytest.fixture
def local_hosts(settings):
    settings.LOGTUNE_ENDPOINT_HOSTS = ["127.0.0.1:*"]


def ask(n: int) -> list[dict]:
    return [{"messages": [{"role": "user", "content": f"q{i}"}], "max_tokens": 5} for i in range(n)]


# --- the client ------------------------------------------------------------------------------------------


def test_answers_come_back_in_the_order_asked_at_most_n_at_a_time(stand_in):
    stand_in.delay_s = 0.05
    target = EndpointTarget(base_url=stand_in.url, model="judge", api_key=SECRET, max_concurrency=3)

    answers = chat_many(target, ask(10))

    assert [answer.text for answer in answers] == [f"echo: q{i}" for i in range(10)]
    assert 1 < stand_in.most_in_flight <= 3
    assert {body["model"] for body in stand_in.requests} == {"judge"}
    assert stand_in.headers[0]["authorization"] == f"Bearer {SECRET}"
    assert answers[0].prompt_tokens is not None and answers[0].latency_ms >= 50


def test_a_rate_limit_is_retried_and_then_answered(stand_in):
    stand_in.failures = [429, 503]
    target = EndpointTarget(base_url=stand_in.url, model="judge", max_retries=3)

    (answer,) = chat_many(target, ask(1))

    assert (answer.error, answer.text) == ("", "echo: q0")
    assert len(stand_in.requests) == 3


def test_a_call_that_keeps_failing_is_its_own_error_and_the_others_answer(stand_in):
    stand_in.failures = [500, 500]
    target = EndpointTarget(base_url=stand_in.url, model="judge", max_concurrency=1, max_retries=1)

    first, second = chat_many(target, ask(2))

    assert first is not None and first.error == "HTTP 500: stand-in failure 500"
    assert first.message is None
    assert second is not None and second.text == "echo: q1"


def test_an_unreachable_endpoint_says_so():
    target = EndpointTarget(base_url="http://127.0.0.1:9/v1", model="judge", max_retries=0, timeout_s=2)

    (answer,) = chat_many(target, ask(1))

    assert answer is not None and answer.error.startswith("could not connect")


def test_a_timeout_says_so(stand_in):
    stand_in.delay_s = 1.0
    target = EndpointTarget(base_url=stand_in.url, model="judge", max_retries=0, timeout_s=0.2)

    (answer,) = chat_many(target, ask(1))

    assert answer is not None and answer.error == "timed out"


def test_once_told_to_stop_no_new_call_starts(stand_in):
    stand_in.delay_s = 0.02
    target = EndpointTarget(base_url=stand_in.url, model="judge", max_concurrency=1)
    seen: list[int] = []

    answers = chat_many(target, ask(6), on_answer=lambda answer: seen.append(answer.index),
                        should_stop=lambda: len(seen) >= 2)  # fmt: skip

    assert [answer is not None for answer in answers] == [True, True, False, False, False, False]
    assert len(stand_in.requests) == 2


# --- keys at rest ----------------------------------------------------------------------------------------


def test_a_key_is_stored_encrypted_and_decrypts(project, local_hosts):
    endpoint = endpoint_create(project=project, fields=EndpointFields("judge", "http://127.0.0.1:8000/v1", "m"),
                               secret=SECRET)  # fmt: skip

    stored = ModelEndpoint.objects.get(pk=endpoint.pk)
    assert SECRET not in stored.api_key_encrypted
    assert stored.api_key_hint == "…cdef"
    assert endpoint_target(stored).api_key == SECRET


def test_keys_rotate_from_the_secret_key_to_configured_keys(project, settings, local_hosts):
    old = secret_encrypt(SECRET)  # with the key derived from SECRET_KEY
    ModelEndpoint.objects.create(project=project, name="j", base_url="http://127.0.0.1:8000/v1", model="m",
                                 api_key_encrypted=old)  # fmt: skip
    new_key = Fernet.generate_key().decode()
    settings.LOGTUNE_ENCRYPTION_KEYS = [new_key]

    call_command("rotate_encryption_keys")

    rotated = ModelEndpoint.objects.get().api_key_encrypted
    assert rotated != old
    settings.SECRET_KEY = "another-secret-key-" + "z" * 40  # the derived key is gone: only the new key decrypts
    assert secret_decrypt(rotated) == SECRET
    with pytest.raises(SecretUnreadable):
        secret_decrypt(old)


def test_a_new_secret_key_with_the_old_one_as_fallback_still_reads_the_keys(settings):
    token = secret_encrypt(SECRET)
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-brand-new-secret-key-" + "y" * 40

    assert secret_decrypt(token) == SECRET


# --- the API ---------------------------------------------------------------------------------------------

BODY = {"name": "judge", "base_url": "http://127.0.0.1:8000/v1", "model": "gpt-judge", "api_key": SECRET}


def test_an_owner_adds_an_endpoint_whose_key_is_never_shown(client_for, owner, project, local_hosts):
    api = client_for(owner)

    created = api.post("/api/v1/endpoints?project=acme", BODY, format="json")

    assert created.status_code == 201, created.json()
    assert created.json()["has_key"] is True
    assert created.json()["api_key_hint"] == "…cdef"
    listed = api.get("/api/v1/endpoints", {"project": "acme"})
    for answer in (created, listed, api.get(f"/api/v1/endpoints/{created.json()['id']}", {"project": "acme"})):
        assert SECRET not in answer.content.decode()
    event = AuditEvent.objects.get(action="endpoints.create")
    assert event.detail["key"] == "set" and SECRET not in str(event.detail)


@pytest.mark.parametrize("role", ["viewer", "editor"])
def test_only_owners_add_change_or_remove(client_for, role, request, project, local_hosts):
    endpoint = endpoint_create(project=project, fields=EndpointFields("j", "http://127.0.0.1:8000/v1", "m"))
    api = client_for(request.getfixturevalue(role))

    assert [row["name"] for row in api.get("/api/v1/endpoints", {"project": "acme"}).json()["results"]] == ["j"]
    assert api.post("/api/v1/endpoints?project=acme", BODY, format="json").status_code == 403
    assert api.patch(f"/api/v1/endpoints/{endpoint.pk}?project=acme", {"model": "x"}, format="json").status_code == 403
    assert api.delete(f"/api/v1/endpoints/{endpoint.pk}?project=acme").status_code == 403
    assert ModelEndpoint.objects.get().model == "m"


def test_a_host_the_settings_do_not_allow_is_refused(client_for, owner, project):
    answer = client_for(owner).post(
        "/api/v1/endpoints?project=acme", BODY | {"base_url": "http://10.0.0.7:8000/v1"}, format="json"
    )

    assert answer.status_code == 400
    assert "LOGTUNE_ENDPOINT_HOSTS" in answer.json()["base_url"][0]
    assert not ModelEndpoint.objects.exists()


def test_a_name_used_twice_is_refused(client_for, owner, project, local_hosts):
    api = client_for(owner)
    api.post("/api/v1/endpoints?project=acme", BODY, format="json")

    answer = api.post("/api/v1/endpoints?project=acme", BODY, format="json")

    assert answer.status_code == 400
    assert answer.json()["name"] == ["The project has an endpoint named 'judge' already."]


def test_a_change_keeps_the_key_unless_given_and_empty_removes_it(client_for, owner, project, local_hosts):
    api = client_for(owner)
    endpoint_id = api.post("/api/v1/endpoints?project=acme", BODY, format="json").json()["id"]
    url = f"/api/v1/endpoints/{endpoint_id}?project=acme"

    kept = api.patch(url, {"model": "gpt-judge-2"}, format="json").json()
    assert (kept["model"], kept["has_key"], kept["name"]) == ("gpt-judge-2", True, "judge")
    assert endpoint_target(ModelEndpoint.objects.get()).api_key == SECRET
    removed = api.patch(url, {"api_key": ""}, format="json").json()
    assert (removed["has_key"], removed["api_key_hint"]) == (False, "")
    assert AuditEvent.objects.filter(action="endpoints.update").count() == 2


def test_another_projects_endpoint_is_not_found(client_for, outsider, project, local_hosts):
    endpoint = endpoint_create(project=project, fields=EndpointFields("j", "http://127.0.0.1:8000/v1", "m"))

    assert client_for(outsider).get(f"/api/v1/endpoints/{endpoint.pk}", {"project": "other"}).status_code == 404


def test_an_editor_checks_that_an_endpoint_answers(client_for, editor, project, stand_in, local_hosts):
    endpoint = endpoint_create(project=project, fields=EndpointFields("j", stand_in.url, "m"), secret=SECRET)

    answer = client_for(editor).post(f"/api/v1/endpoints/{endpoint.pk}/check?project=acme").json()

    assert answer["ok"] is True
    assert answer["answer"] == "echo: Reply with the word OK."
    assert stand_in.requests[0]["max_tokens"] == 8


def test_a_check_of_a_failing_endpoint_says_why_without_retrying(client_for, editor, project, stand_in, local_hosts):
    endpoint = endpoint_create(project=project, fields=EndpointFields("j", stand_in.url, "m"))
    stand_in.failures = [401]

    answer = client_for(editor).post(f"/api/v1/endpoints/{endpoint.pk}/check?project=acme").json()

    assert (answer["ok"], answer["error"]) == (False, "HTTP 401: stand-in failure 401")
    assert len(stand_in.requests) == 1


def test_an_endpoint_whose_host_is_no_longer_allowed_is_not_called(client_for, editor, project, stand_in, settings):
    settings.LOGTUNE_ENDPOINT_HOSTS = ["127.0.0.1:*"]
    endpoint = endpoint_create(project=project, fields=EndpointFields("j", stand_in.url, "m"))
    settings.LOGTUNE_ENDPOINT_HOSTS = ["api.openai.com"]

    answer = client_for(editor).post(f"/api/v1/endpoints/{endpoint.pk}/check?project=acme").json()

    assert answer["ok"] is False and "LOGTUNE_ENDPOINT_HOSTS" in answer["error"]
    assert stand_in.requests == []


# --- the page --------------------------------------------------------------------------------------------


def test_an_owner_adds_one_on_the_page_and_the_key_stays_hidden(client, owner, project, local_hosts):
    client.force_login(owner)
    form = {"name": "local vllm", "base_url": "http://127.0.0.1:8000/v1", "model": "qwen", "api_key": SECRET,
            "max_concurrency": "4", "timeout_s": "60"}  # fmt: skip

    page = client.post("/p/acme/endpoints/", form, follow=True).content.decode()

    assert "Endpoint &#x27;local vllm&#x27; added." in page
    assert "…cdef" in page and SECRET not in page
    assert ModelEndpoint.objects.get().max_concurrency == 4


def test_the_page_names_a_bad_field(client, owner, project):
    client.force_login(owner)

    answer = client.post("/p/acme/endpoints/", {"name": "x", "base_url": "ftp://h", "model": "m",
                                                "max_concurrency": "8", "timeout_s": "60"})  # fmt: skip

    assert answer.status_code == 400
    assert "must start with http:// or https://" in answer.content.decode()


def test_viewers_see_the_list_but_no_form_nor_check(client, viewer, project, local_hosts):
    endpoint_create(project=project, fields=EndpointFields("judge", "http://127.0.0.1:8000/v1", "m"))
    client.force_login(viewer)

    page = client.get("/p/acme/endpoints/").content.decode()

    assert "judge" in page
    assert 'id="endpoint-form"' not in page and ">Check<" not in page


def test_the_check_button_answers_with_a_fragment(client, editor, project, stand_in, local_hosts):
    endpoint = endpoint_create(project=project, fields=EndpointFields("j", stand_in.url, "m"))
    client.force_login(editor)

    fragment = client.post(f"/p/acme/endpoints/{endpoint.pk}/check").content.decode()

    assert "answers" in fragment and "echo: Reply with the word OK." in fragment


# --- cost ------------------------------------------------------------------------------------------------


def test_cost_uses_the_endpoint_prices_else_the_price_table(project, local_hosts):
    priced = endpoint_create(project=project, fields=EndpointFields(
        "priced", "http://127.0.0.1:8000/v1", "m", input_price_per_mtok=Decimal("2"),
        output_price_per_mtok=Decimal("8")))  # fmt: skip
    listed = endpoint_create(project=project, fields=EndpointFields("listed", "http://127.0.0.1:8000/v1", "gpt-4o"))
    local = endpoint_create(project=project, fields=EndpointFields("local", "http://127.0.0.1:8000/v1", "my-qwen"))

    assert endpoint_cost_usd(priced, prompt_tokens=1_000_000, completion_tokens=500_000) == Decimal(6)
    assert endpoint_cost_usd(listed, prompt_tokens=1_000_000, completion_tokens=0) > 0
    assert endpoint_cost_usd(local, prompt_tokens=1_000_000, completion_tokens=0) is None


def test_prices_are_json_numbers_kept_to_six_decimals(client_for, owner, project, local_hosts):
    body = BODY | {"input_price_per_mtok": 2.5, "output_price_per_mtok": 0.1234567}

    created = client_for(owner).post("/api/v1/endpoints?project=acme", body, format="json").json()

    assert (created["input_price_per_mtok"], created["output_price_per_mtok"]) == ("2.500000", "0.123457")
