"""Login throttling: too many wrong passwords for one username, or from one address, pause logging in for a
cool-off, before any password is hashed; an administrator can unlock at once. Sessions made without a password
(force_login) and API keys are not passwords and are not affected."""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"  # tests.factories.UserFactory's


@pytest.fixture
def limit(settings) -> int:
    settings.AXES_FAILURE_LIMIT = 5
    return 5


def log_in(client: Client, username: str, password: str, **extra: str):
    return client.post("/login/", {"username": username, "password": password}, **extra)


def logged_in(response) -> bool:
    return response.status_code == 302 and response["Location"] == "/"


def fail(client: Client, username: str, times: int, **extra: str) -> None:
    for _ in range(times):
        answer = log_in(client, username, "wrong password", **extra)
        assert answer.status_code in (200, 429)


def test_wrong_passwords_below_the_limit_are_form_errors_and_the_last_one_locks(client, owner, limit):
    answers = [log_in(client, "alice", "wrong password") for _ in range(limit)]

    assert [answer.status_code for answer in answers] == [200] * (limit - 1) + [429]
    assert "Please enter a correct username and password" in answers[0].content.decode()
    assert "Too many failed logins" in answers[-1].content.decode()


def test_the_account_is_locked_even_for_the_right_password_and_says_when_to_retry(client, owner, limit):
    fail(client, "alice", limit)

    answer = log_in(Client(REMOTE_ADDR="10.1.1.1"), "alice", PASSWORD)  # from another address, too

    page = answer.content.decode()
    assert answer.status_code == 429
    assert answer["Retry-After"] == "900"
    assert "no-store" in answer["Cache-Control"]
    assert "Too many failed logins" in page and "Try again after" in page
    retry_at = (timezone.now() + timedelta(minutes=15)).strftime("%Y-%m-%d %H:")
    assert retry_at in page
    assert "axes_reset_username" in page


def test_a_locked_login_hashes_no_password(client, owner, limit, monkeypatch):
    fail(client, "alice", limit)
    hashed = []
    monkeypatch.setattr(get_user_model(), "check_password", lambda user, raw: hashed.append(raw) or True)

    answers = [log_in(client, "alice", PASSWORD).status_code for _ in range(300)]

    assert set(answers) == {429}
    assert hashed == []


def test_the_address_is_locked_for_every_username(client, owner, editor, limit):
    for n in range(limit):
        log_in(client, f"nobody-{n}", "wrong password")

    assert log_in(client, "bob", PASSWORD).status_code == 429
    assert logged_in(log_in(Client(REMOTE_ADDR="10.1.1.1"), "bob", PASSWORD))


def test_behind_the_proxy_the_address_it_saw_is_counted_and_the_forged_ones_are_not(owner, editor, limit, settings):
    settings.BEHIND_TLS_PROXY = True
    # The proxy appends the address it saw; what comes before it the client wrote itself.
    attacker = Client(HTTP_X_FORWARDED_FOR="10.0.0.9, 203.0.113.5")
    for n in range(limit):
        log_in(attacker, f"nobody-{n}", "x", HTTP_X_FORWARDED_FOR=f"1.2.3.{n}, 203.0.113.5")

    assert log_in(attacker, "bob", PASSWORD).status_code == 429
    assert logged_in(log_in(Client(HTTP_X_FORWARDED_FOR="203.0.113.5, 198.51.100.7"), "bob", PASSWORD))
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"203.0.113.5"}


def test_the_lockout_ends_after_the_cool_off(client, owner, limit):
    fail(client, "alice", limit)
    assert log_in(client, "alice", PASSWORD).status_code == 429

    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))

    assert logged_in(log_in(client, "alice", PASSWORD))


def test_a_try_during_the_lockout_starts_the_cool_off_again(client, owner, limit):
    fail(client, "alice", limit)
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=10))

    assert log_in(client, "alice", PASSWORD).status_code == 429
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=10))
    assert log_in(client, "alice", PASSWORD).status_code == 429


def test_an_administrator_unlocks_a_username_and_an_address(client, owner, limit):
    fail(client, "alice", limit)

    call_command("axes_reset_username", "alice")
    assert logged_in(log_in(Client(REMOTE_ADDR="10.1.1.1"), "alice", PASSWORD))

    fail(client, "alice", limit)
    call_command("axes_reset_username", "alice")
    call_command("axes_reset_ip", "127.0.0.1")
    assert logged_in(log_in(client, "alice", PASSWORD))


def test_a_successful_login_clears_the_failures_before_it(client, owner, limit):
    fail(client, "alice", limit - 1)
    assert logged_in(log_in(client, "alice", PASSWORD))

    fail(client, "alice", limit - 1)

    assert logged_in(log_in(client, "alice", PASSWORD))


def test_the_admin_login_is_throttled_too(client, owner, limit):
    fail(client, "alice", limit)

    answer = client.post("/admin/login/", {"username": "alice", "password": PASSWORD})

    assert answer.status_code == 429


def test_sessions_made_without_a_password_and_api_keys_are_not_affected(client, owner, project, key_client, limit):
    fail(client, "alice", limit)

    client.force_login(owner)
    assert client.get("/p/acme/").status_code == 200
    assert client.get("/api/v1/logs?project=acme").status_code == 200
    assert key_client.post("/api/v1/logs", {"prompt": "2+2?", "completion": "4"}, format="json").status_code == 200
