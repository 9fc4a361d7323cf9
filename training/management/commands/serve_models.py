from django.core.management.base import BaseCommand, CommandParser

from training.models import Engine


class Command(BaseCommand):
    help = (
        "Run this machine's model servers for the project's deployments (one per GPU worker): starts vLLM, or the "
        "small transformers server, per base model, loads and unloads adapters as fine-tunes are deployed and "
        "stopped, restarts a server that dies. Runs until stopped (SIGTERM, Ctrl-C). docs/serving.md."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--engine", choices=[e.value for e in Engine], default=None,
            help="The engine to run (default: LOGTUNE_SERVING_ENGINE; auto is vLLM when it is installed).",
        )  # fmt: skip
        parser.add_argument("--rounds", type=int, default=None, help="Stop after this many rounds (2 s each).")

    def handle(self, *args: object, engine: str | None, rounds: int | None, **options: object) -> None:
        from training.serving.supervisor import supervise

        supervise(engine=engine, rounds=rounds)
