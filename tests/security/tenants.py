"""The world of the security tests: every route of the URLconf, two projects with one of everything each,
and requests that leave nothing behind."""

import re
from collections.abc import Iterator
from dataclasses import dataclass

from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from curation.export.snapshots import snapshot_request
from curation.models import (
    BulkJob,
    Dataset,
    DatasetEntry,
    ImportJob,
    LogEntry,
    Project,
    RedactionJob,
    Role,
    SavedView,
    Tag,
)
from curation.services.logs import logs_ingest
from curation.services.projects import api_key_create
from tests.factories import ProjectFactory, UserFactory
from training.models import BaseModel, FineTuneJob, FineTuneStatus, Generation, LossPreview
from training.services.jobs import finetune_create

# Routes outside the tenant model: sign-in, the admin (Django's own staff checks), the public API description.
# The logging proxy's routes are authenticated by the X-Logtune-Key header alone (no session, no Bearer key);
# tests/proxy covers their keys, roles and projects.
PUBLIC = {
    "login", "logout", "api-schema", "api-docs", "api-redoc", "healthz",
    "proxy-openai-chat", "proxy-anthropic-messages",
}  # fmt: skip

# What a path parameter names, from the segment in front of it (`job_id` is an import, a bulk job or a fine-tune).
OBJECT_OF_SEGMENT = {
    "logs": "log", "imports": "import", "bulk-jobs": "bulk", "jobs": "bulk", "datasets": "dataset",
    "entries": "entry", "tags": "tag", "snapshots": "snapshot", "finetunes": "finetune", "keys": "key",
    "views": "view", "generations": "generation", "loss-preview": "preview", "redaction-jobs": "redaction",
}  # fmt: skip


@dataclass(frozen=True)
class Route:
    name: str
    pattern: str  # Django route syntax, from the root
    is_api: bool

    def url(self, objects: dict[str, int], slug: str) -> str:
        def fill(match: re.Match) -> str:
            param = match.group(2)
            if param == "slug":
                return slug
            return str(objects[self.object_for(param, match.start())])

        return "/" + re.sub(r"<(?:(\w+):)?(\w+)>", fill, self.pattern)

    def object_for(self, param: str, position: int) -> str:
        segment = self.pattern[:position].rstrip("/").rsplit("/", 1)[-1]
        return OBJECT_OF_SEGMENT[segment]

    @property
    def has_objects(self) -> bool:
        return bool(re.search(r"<int:\w+>", self.pattern))


def _walk(patterns: list, prefix: str = "") -> Iterator[Route]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            if str(entry.pattern).startswith("admin/"):
                continue
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern) and entry.name not in PUBLIC:
            pattern = prefix + str(entry.pattern)
            yield Route(name=entry.name or pattern, pattern=pattern, is_api=pattern.startswith("api/"))


ROUTES = sorted(_walk(get_resolver().url_patterns), key=lambda r: r.pattern)


# --- The world: two projects, each with one of everything -----------------------------------------------


@dataclass
class Tenant:
    project: Project
    marker: str
    objects: dict[str, int]
    users: dict[str, object]
    keys: dict[str, str]


def tenant_create(slug: str) -> Tenant:
    marker = f"secret-of-{slug}-{'x' * 6}"
    project = ProjectFactory(slug=slug, name=slug.title())
    users = {role: UserFactory(username=f"{slug}-{role}", memberships=[(project, role)]) for role in Role.values}
    keys = {role: api_key_create(project=project, name=f"{slug} {role}", role=role)[1] for role in Role.values}
    chat = [{"role": "user", "content": f"What is {marker}?"}, {"role": "assistant", "content": f"It is {marker}."}]
    logs_ingest(project=project, items=[{"messages": chat, "tags": [f"tag-{marker}"]}])
    log = LogEntry.objects.get(project=project)
    dataset = Dataset.objects.create(project=project, name=f"dataset {marker}")
    entry = DatasetEntry.objects.create(dataset=dataset, log=log, messages=chat, est_tokens=10)
    DatasetEntry.objects.create(dataset=dataset, messages=chat, split="validation", est_tokens=10)
    snapshot = snapshot_request(dataset=dataset)
    base = BaseModel.objects.get_or_create(name="tiny", defaults={"path": "/models/tiny"})[0]
    job = finetune_create(dataset=dataset, base_model=base, hyperparameters={"max_steps": 2}, snapshot=snapshot)
    FineTuneJob.objects.filter(pk=job.pk).update(
        status=FineTuneStatus.SUCCEEDED, merge_status=FineTuneStatus.SUCCEEDED
    )
    for folder in (job.adapter_dir, job.merged_dir):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "adapter_config.json").write_text(f'{{"marker": "{marker}"}}')
    (job.output_dir / "train.log").write_text(f"step 1 {marker}\n")
    generation = Generation.objects.create(job=job, messages=chat[:1], status=FineTuneStatus.SUCCEEDED)
    preview = LossPreview.objects.create(entry=entry, base_model="tiny", status=FineTuneStatus.SUCCEEDED)
    objects = {
        "log": log.pk,
        "tag": Tag.objects.get(project=project).pk,
        "dataset": dataset.pk,
        "entry": entry.pk,
        "snapshot": snapshot.pk,
        "finetune": job.pk,
        "generation": generation.pk,
        "preview": preview.pk,
        "import": ImportJob.objects.create(project=project, source_name=f"{marker}.jsonl").pk,
        "bulk": BulkJob.objects.create(project=project, action="tag_add", query=f"q={marker}").pk,
        "view": SavedView.objects.create(project=project, name=f"view {marker}", query=f"q={marker}").pk,
        "redaction": RedactionJob.objects.create(dataset=dataset, kinds=["EMAIL"], error=marker).pk,
        "key": project.api_keys.first().pk,  # type: ignore[union-attr]
    }
    return Tenant(project=project, marker=marker, objects=objects, users=users, keys=keys)


# --- Asking ----------------------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    body: str
    location: str


def ask(client: Client, method: str, url: str, *, project: str | None = None) -> Answer:
    """One request, inside a savepoint that is rolled back: a delete in one case does not change the next."""
    query = {"project": project} if project else {}
    if project and method != "GET":
        url = f"{url}?project={project}"
        query = {}
    with transaction.atomic():
        if method == "GET":
            response = client.get(url, query)
        elif method == "POST" and not url.startswith("/api/"):
            response = client.post(url, {})
        else:
            response = client.generic(method, url, "{}", content_type="application/json")
        transaction.set_rollback(True)
    body = b"".join(response.streaming_content) if response.streaming else response.content  # type: ignore[attr-defined]
    return Answer(response.status_code, body.decode("utf-8", "replace"), response.get("Location", ""))


def session(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def keyed(raw: str) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {raw}")


def served_methods(route: Route, own: Tenant) -> list[str]:
    """The methods a route serves: what its owner is not answered 405 for."""
    client = session(own.users[Role.OWNER])
    url = route.url(own.objects, own.project.slug)
    project = own.project.slug if route.is_api else None
    methods = ["GET", "POST", "PATCH", "DELETE"] if route.is_api else ["GET", "POST"]
    return [m for m in methods if ask(client, m, url, project=project).status != 405]
