"""The embedded defaults a newcomer gets from `make run`: SQLite and a file-system broker, no servers."""

import os
import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_int

ROOT = Path(__file__).resolve().parent.parent


def embedded_env(var_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "SECRET_KEY"}}
    env.update({"DJANGO_SETTINGS_MODULE": "config.settings", "DEBUG": "1", "LOGTUNE_VAR_DIR": str(var_dir), **extra})
    return env


def manage(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    env = embedded_env(tmp_path, DEBUG="0")

    result = manage(env, "check")

    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_malformed_settings_fail_loudly(monkeypatch):
    monkeypatch.setenv("SOME_FLAG", "maybe")
    monkeypatch.setenv("SOME_NUMBER", "ten")

    with pytest.raises(ImproperlyConfigured, match="SOME_FLAG='maybe' is not a boolean"):
        env_bool("SOME_FLAG", False)
    with pytest.raises(ImproperlyConfigured, match="SOME_NUMBER='ten' is not an integer"):
        env_int("SOME_NUMBER", 1)


def test_the_embedded_stack_imports_a_file_through_its_own_worker(tmp_path):
    env = embedded_env(tmp_path)
    assert manage(env, "migrate", "--no-input").returncode == 0
    demo = manage(env, "bootstrap_demo")
    assert demo.returncode == 0, demo.stderr
    logs = tmp_path / "logs.jsonl"
    logs.write_bytes(b"\n".join(orjson.dumps({"prompt": f"q{i}", "completion": "a"}) for i in range(50)) + b"\n")

    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo", "-Q", "default", "-l", "INFO"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        result = manage(env, "import_logs", str(logs), "--project", "demo", "--no-progress", timeout=90)
    finally:
        worker.terminate()
        worker.wait(timeout=30)

    assert result.returncode == 0, result.stderr
    assert "Imported 50 logs (0 duplicates, 0 rejected lines) from 50 lines." in result.stdout
    assert (tmp_path / "logtune.sqlite3").exists()
    count = manage(env, "shell", "-c", "from curation.models import LogEntry; print(LogEntry.objects.count())")
    assert count.stdout.strip().splitlines()[-1] == "53"  # 3 demo logs + 50 imported


def test_the_env_example_lists_every_setting():
    read = set(re.findall(r'env_(?:str|bool|int|list)\("([A-Z_]+)"', (ROOT / "config" / "settings.py").read_text()))
    listed = set(re.findall(r"^([A-Z_]+)=", (ROOT / "docker" / ".env.example").read_text(), re.MULTILINE))

    assert read, "settings read no variables?"
    assert read <= listed, f"missing from docker/.env.example: {sorted(read - listed)}"


def test_the_local_settings_file_lets_commands_run_without_debug(tmp_path):
    env = embedded_env(tmp_path, DEBUG="")
    del env["DEBUG"]
    assert subprocess.run([sys.executable, "-m", "config.local_env"], cwd=ROOT, env=env).returncode == 0
    written = (tmp_path / "local.env").read_text()

    result = manage(env, "check")

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "local.env").stat().st_mode & 0o777 == 0o600
    assert re.search(r"^SECRET_KEY=\S{50,}$", written, re.MULTILINE)
    subprocess.run([sys.executable, "-m", "config.local_env"], cwd=ROOT, env=env, check=True)
    assert (tmp_path / "local.env").read_text() == written  # written once: the key stays


def test_the_environment_overrides_the_local_settings_file(tmp_path):
    (tmp_path / "local.env").write_text("# a comment\nSECRET_KEY=" + "k" * 60 + "\n")
    env = embedded_env(tmp_path, SECRET_KEY="short")
    del env["DEBUG"]

    result = manage(env, "check")

    assert result.returncode != 0
    assert "SECRET_KEY is too weak" in result.stderr


def test_a_malformed_local_settings_file_fails_loudly(tmp_path):
    (tmp_path / "local.env").write_text("SECRET_KEY\n")

    result = manage(embedded_env(tmp_path), "check")

    assert result.returncode != 0
    assert "local.env, line 1: expected NAME=value" in result.stderr
