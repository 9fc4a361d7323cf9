"""The trainer package (training/trainer/) as a program of its own: no Django in it, and its command line."""

import ast
import json
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from training.trainer.config import TrainConfig

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "training" / "trainer"
MODULES = sorted(f"training.trainer.{path.stem}" for path in PACKAGE.glob("*.py") if path.stem != "__init__")
# What a GPU worker's trainer must never load: Django, what runs on it, and the web side of this app.
FORBIDDEN = ("django", "rest_framework", "celery", "curation", "config")


def outside(module: str) -> bool:
    """Whether `module` is one the trainer may not import: Django and its world, or training's web side."""
    top = module.split(".")[0]
    return top in FORBIDDEN or (top == "training" and module not in ("training", "training.trainer")
                                and not module.startswith("training.trainer."))  # fmt: skip


def imported_names(path: Path) -> list[str]:
    """Every module an import statement of `path` names, at any depth (imports inside functions too)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative to training.trainer (level 1), training (2), or above
                parent = ".".join(["training", "trainer"][: max(0, 3 - node.level)])
                base = ".".join(part for part in (parent, base) if part)
            names += [f"{base}.{alias.name}" for alias in node.names]
    return names


def test_the_package_holds_the_trainer_and_its_child_programs():
    names = ("config", "data", "loop", "__main__", "launcher", "call", "merge", "generate", "loss_preview", "serve")
    for name in names:
        assert f"training.trainer.{name}" in MODULES


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda path: path.name)
def test_no_module_of_the_package_imports_django_or_the_web_side(path):
    assert [name for name in imported_names(path) if outside(name)] == []


def test_importing_every_module_of_the_package_loads_no_django_nor_torch():
    check = (
        "import importlib, json, sys\n"
        f"for name in {MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    run = subprocess.run([sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True, timeout=120)

    assert run.returncode == 0, run.stderr
    loaded = json.loads(run.stdout)
    assert set(MODULES) <= set(loaded)
    assert [name for name in loaded if outside(name)] == []
    # torch and transformers load inside the functions that need them, never on import (the web process
    # imports training.trainer.config).
    assert [name for name in loaded if name.split(".")[0] in ("torch", "transformers", "peft", "accelerate")] == []


def test_the_import_check_would_see_django():
    assert outside("django.db") and outside("curation.models") and outside("training.models")
    assert outside("training.finetunes.runner") and outside("config.settings")
    assert not outside("training.trainer.loop") and not outside("json")


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
