import hashlib
import io

import pytest
from django.contrib.sessions.models import Session
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from rest_framework.test import APIClient

from curation.models import ApiKey, AuditEvent, ImportJob, Project
from curation.projects.services import api_key_authenticate, api_key_create, api_key_revoke

pytestmark = pytest.mark.django_db


def test_a_key_is_random_and_stored_only_as_a_hash(project):
    key, raw = api_key_create(project=project, name="backend")
    _, other = api_key_create(project=project)

    assert raw != other
    assert raw.startswith(f"lt_{key.prefix}_")
    assert len(raw) - len(f"lt_{key.prefix}_") >= 43  # 32 random bytes, base64url
    stored = ApiKey.objects.get(pk=key.pk)
    assert stored.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert raw not in {getattr(stored, f.attname) for f in ApiKey._meta.concrete_fields}


def test_a_revoked_key_no_longer_authenticates(project):
    key, raw = api_key_create(project=project)
    assert api_key_authenticate(raw=raw) == key

    api_key_revoke(key=key)

    assert api_key_authenticate(raw=raw) is None


def test_create_api_key_creates_the_project_and_prints_the_key_last():
    out, err = io.StringIO(), io.StringIO()

    call_command("create_api_key", "--project", "new-team", stdout=out, stderr=err)

    raw = out.getvalue().strip().splitlines()[-1]
    assert Project.objects.filter(slug="new-team").exists()
    assert api_key_authenticate(raw=raw).project.slug == "new-team"
    assert "Created project 'new-team'" in err.getvalue()


def test_create_api_key_reuses_an_existing_project(project):
    out = io.StringIO()

    call_command("create_api_key", "--project", "acme", stdout=out, stderr=io.StringIO())

    assert api_key_authenticate(raw=out.getvalue().strip()).project == project
    assert Project.objects.count() == 1


def test_pages_need_a_login(client, project):
    assert client.get("/").status_code == 302
    assert client.get("/p/acme/").url.startswith("/login/")


def test_the_project_page_shows_logs_to_members_only(client, project, viewer, outsider, key_client):
    key_client.post("/api/v1/logs", {"prompt": "hello there", "completion": "hi"}, format="json")

    client.force_login(viewer)
    page = client.get("/p/acme/")
    assert page.status_code == 200
    assert b"Recent logs" in page.content
    assert b"API keys" not in page.content  # owners only
    client.force_login(outsider)
    assert client.get("/p/acme/").status_code == 404


def test_an_owner_sees_a_new_key_once_and_can_revoke_it(client, project, owner):
    client.force_login(owner)

    created = client.post("/p/acme/keys/new", {"name": "backend", "role": "viewer"})
    second = client.get("/p/acme/").content.decode()

    key = ApiKey.objects.get(project=project, name="backend")
    raw = created.content.decode().split('<pre class="secret">')[1].split("</pre>")[0]
    assert api_key_authenticate(raw=raw) == key
    assert "no-store" in created["Cache-Control"]
    assert raw not in second
    assert key.role == "viewer" and "<td>Viewer</td>" in second
    client.post(f"/p/acme/keys/{key.pk}/revoke")
    assert api_key_authenticate(raw=raw) is None
    events = AuditEvent.objects.filter(project=project).order_by("created_at")
    assert [(e.action, e.actor, e.detail["prefix"]) for e in events] == [
        ("key.create", owner, key.prefix),
        ("key.revoke", owner, key.prefix),
    ]


def test_a_key_acts_with_its_role(project):
    viewer_key = APIClient(HTTP_AUTHORIZATION=f"Bearer {api_key_create(project=project, role='viewer')[1]}")
    editor_key = APIClient(HTTP_AUTHORIZATION=f"Bearer {api_key_create(project=project, role='editor')[1]}")
    log = {"prompt": "2+2?", "completion": "4"}

    refused = viewer_key.post("/api/v1/logs", log, format="json")
    accepted = editor_key.post("/api/v1/logs", log, format="json")

    assert refused.status_code == 403 and "editor role" in refused.json()["detail"]
    assert accepted.status_code == 200 and accepted.json()["accepted"] == 1
    assert viewer_key.get("/api/v1/logs").json()["results"][0]["id"]


def test_editors_cannot_manage_keys(client, project, editor):
    key, _ = api_key_create(project=project)
    client.force_login(editor)

    assert client.post("/p/acme/keys/new", {"name": "x"}).status_code == 403
    assert client.post(f"/p/acme/keys/{key.pk}/revoke").status_code == 403
    assert ApiKey.objects.get(pk=key.pk).revoked_at is None


def test_an_editor_uploads_a_file_from_the_page_and_sees_its_progress(
    client, project, editor, django_capture_on_commit_callbacks
):
    client.force_login(editor)
    upload = SimpleUploadedFile("a.jsonl", b'{"prompt": "p", "completion": "c"}\n')

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post("/p/acme/imports/upload", {"file": upload})

    assert response.status_code == 302
    assert len(callbacks) == 1  # the import task is queued once the upload is committed
    assert ImportJob.objects.get(project=project).source_name == "a.jsonl"
    panel = client.get("/p/acme/imports/").content.decode()
    assert "a.jsonl" in panel
    assert 'hx-trigger="every 1s"' in panel  # keeps polling while queued


def test_viewers_cannot_upload_from_the_page(client, project, viewer):
    client.force_login(viewer)

    response = client.post("/p/acme/imports/upload", {"file": SimpleUploadedFile("a.jsonl", b"{}\n")})

    assert response.status_code == 403
    assert not ImportJob.objects.exists()


def test_login_with_the_form(client, project, owner):
    response = client.post("/login/", {"username": "alice", "password": "correct horse battery staple"})

    assert response.status_code == 302
    assert client.get("/", follow=True).request["PATH_INFO"] == "/p/acme/"


def test_a_new_key_is_in_no_session_row(client, project, owner):
    client.force_login(owner)

    created = client.post("/p/acme/keys/new", {"name": "backend", "role": "editor"})
    raw = created.content.decode().split('<pre class="secret">')[1].split("</pre>")[0]
    sessions = list(Session.objects.all())
    client.get("/p/acme/")  # where the key used to be taken back out of the session

    assert api_key_authenticate(raw=raw) is not None
    assert sessions
    for session in sessions:
        assert raw not in session.session_data
        assert raw not in str(session.get_decoded())


def test_a_refused_key_form_goes_back_to_the_project_page_with_the_reason(client, project, owner):
    client.force_login(owner)

    response = client.post("/p/acme/keys/new", {"name": "x", "role": "emperor"}, follow=True)

    assert response.redirect_chain == [("/p/acme/", 302)]
    assert "emperor" in response.content.decode()
    assert not ApiKey.objects.filter(name="x").exists()
