"""The trainer package (training/trainer/) as a program of its own: its command line."""

import subprocess
import sys
from dataclasses import fields
from pathlib import Path

from training.trainer.config import TrainConfig

REPO = Path(__file__).resolve().parents[2]


def run_trainer(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "training.trainer", *arguments],
                          cwd=REPO, capture_output=True, text=True, timeout=120)  # fmt: skip


def test_help_prints_the_usage_and_every_setting_with_its_type_default_and_doc():
    run = run_trainer("--help")

    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("usage: python -m training.trainer CONFIG.json\n")
    for field in fields(TrainConfig):
        assert f"\n    {field.name}: " in run.stdout
    assert "\n    learning_rate: float | None = null\n        None takes the method's default" in run.stdout
    assert '\n    method: str = "lora"\n' in run.stdout
    assert "\n    model: str = (required)\n" in run.stdout
    assert "\n  evaluation and checkpoints:\n" in run.stdout
    assert run_trainer("-h").stdout == run.stdout


def test_every_setting_has_a_doc_for_the_help():
    from training.trainer.__main__ import config_fields

    described = config_fields()

    assert list(described) == [field.name for field in fields(TrainConfig)]
    assert all(doc for _kind, _section, doc in described.values())


def test_a_wrong_command_line_prints_the_usage():
    run = run_trainer()

    assert run.returncode == 2
    assert run.stderr == "usage: python -m training.trainer CONFIG.json\n"
