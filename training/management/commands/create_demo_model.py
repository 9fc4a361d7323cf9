from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from training.models import BaseModel

DEMO_NAME = "logtune-demo"
DESCRIPTION = (
    "A tiny random-init Llama built on this machine, for trying fine-tuning out in seconds on a CPU. "
    "It starts knowing nothing: give it a learning rate of 0.01 and 100 steps or more."
)
# What the description says, as the fine-tune form's and the API's defaults: a learning rate of 0.01, and one
# example a step for 10 epochs, so that even the smallest dataset allowed trains for about 100 steps.
DEMO_HYPERPARAMETERS = {"learning_rate": 0.01, "epochs": 10, "batch_size": 1, "gradient_accumulation": 1}


class Command(BaseCommand):
    help = "Build the tiny demo base model (no download) and offer it for fine-tuning. Safe to run again."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--force", action="store_true", help="Build it again even if it is there.")

    def handle(self, *args: object, force: bool, **options: object) -> None:
        folder = Path(settings.LOGTUNE_MODELS_DIR) / DEMO_NAME
        row = BaseModel.objects.filter(name=DEMO_NAME).first()
        if row is not None and not force and (Path(row.path) / "config.json").exists():
            BaseModel.objects.filter(pk=row.pk).update(
                description=DESCRIPTION, default_hyperparameters=DEMO_HYPERPARAMETERS
            )
            self.stdout.write(f"Demo model ready: {DEMO_NAME} ({row.path})")
            return
        from training.trainer.demo_model import build_demo_model

        path = build_demo_model(folder)
        BaseModel.objects.update_or_create(name=DEMO_NAME, defaults={
            "path": str(path), "description": DESCRIPTION, "default_hyperparameters": DEMO_HYPERPARAMETERS,
        })  # fmt: skip
        self.stdout.write(f"Demo model built: {DEMO_NAME} ({path})")
