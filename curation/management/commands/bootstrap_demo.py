from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from curation.logs.services import logs_ingest
from curation.models import LogEntry, Project, Role
from curation.projects.services import membership_set, project_create

DEMO_LOGS: list[dict] = [
    {
        "provider": "openai",
        "request": {
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "You are a concise math tutor."},
                {"role": "user", "content": "What is 17 × 23?"},
            ],
        },
        "response": {
            "object": "chat.completion",
            "model": "gpt-4o-mini-2024-07-18",
            "created": 1764000000,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "17 × 23 = 391."}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 27, "completion_tokens": 8, "total_tokens": 35},
        },
        "status_code": 200,
        "latency_ms": 640,
        "tags": ["math", "demo"],
        "metadata": {"env": "prod", "feature": "tutor"},
        "external_id": "demo-1",
    },
    {
        "provider": "anthropic",
        "request": {
            "model": "claude-3-5-haiku-20241022",
            "max_tokens": 256,
            "system": "Answer in one sentence.",
            "messages": [{"role": "user", "content": "Why is the sky blue?"}],
        },
        "response": {
            "type": "message",
            "role": "assistant",
            "model": "claude-3-5-haiku-20241022",
            "content": [
                {"type": "text", "text": "Air molecules scatter blue sunlight more than red (Rayleigh scattering)."}
            ],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 18, "output_tokens": 16},
        },
        "status_code": 200,
        "latency_ms": 910,
        "tags": ["science", "demo"],
        "metadata": {"env": "prod", "feature": "qa"},
        "external_id": "demo-2",
    },
    {
        "messages": [
            {"role": "user", "content": "Translate 'good morning' to French."},
            {"role": "assistant", "content": "Bonjour."},
        ],
        "tags": ["translation", "demo"],
        "external_id": "demo-3",
    },
]


class Command(BaseCommand):
    help = "Create the demo user (demo / demo) with a 'demo' project holding a few logs. Safe to run again."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="demo")
        parser.add_argument("--password", default="demo")
        parser.add_argument("--address", default="127.0.0.1:8000", help="host:port the web server listens on.")

    @transaction.atomic
    def handle(self, *args: object, username: str, password: str, address: str, **options: object) -> None:
        user, created = get_user_model().objects.get_or_create(username=username)
        if created:
            user.set_password(password)
            user.save()
        project = Project.objects.filter(slug="demo").first() or project_create(name="Demo", slug="demo")
        membership_set(project=project, user=user, role=Role.OWNER)
        if not LogEntry.objects.filter(project=project).exists():
            logs_ingest(project=project, items=DEMO_LOGS)
        host, _, port = address.rpartition(":")
        # Listening on every address: this machine's own is one of them.
        if host in ("0.0.0.0", "[::]", "::"):  # noqa: S104
            address = f"127.0.0.1:{port}"
        self.stdout.write(f"Demo ready: log in as {username} / {password} at http://{address}/")
