"""Production: the settings docker/.env.example describes pass Django's deploy checks, weak keys are refused,
/healthz tells the containers' health checks the truth, and docker/ (images, compose file, accelerate configs)
agrees with itself, with pyproject.toml, with the Makefile and with docker/.env.example."""

import os
import re
import secrets
import shlex
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from django.db import connections

from tests.test_embedded import ROOT, manage
from training.finetunes import runner
from training.finetunes.runner import TRAINER_MODULE, _launch
from training.processes import signal_group

DOCKER = ROOT / "docker"
APP_SERVICES = ("migrate", "web", "worker", "beat", "gpu-worker")


def env_example() -> dict[str, str]:
    lines = (DOCKER / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if re.match(r"^[A-Z_]+=", line))


def production_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """docker/.env.example as an operator fills it in, on a SQLite file and folders of this test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEST_", "DJANGO_"))}
    env.update(env_example())
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings", SECRET_KEY=secrets.token_urlsafe(50),
        DATABASE_URL=f"sqlite:///{tmp_path / 'logtune.sqlite3'}", LOGTUNE_VAR_DIR=str(tmp_path / "var"),
        MEDIA_ROOT=str(tmp_path / "media"),
    )  # fmt: skip
    env.update(extra)
    return env


def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- settings ---------------------------------------------------------------------------------------


def test_the_production_settings_pass_the_deploy_checks_without_a_warning(tmp_path):
    result = manage(production_env(tmp_path), "check", "--deploy", "--fail-level", "WARNING")

    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNING" not in result.stdout + result.stderr


def test_without_https_switches_the_deploy_checks_fail(tmp_path):
    env = production_env(tmp_path, SECURE_SSL_REDIRECT="0", SECURE_HSTS_SECONDS="0", SECURE_COOKIES="0")

    result = manage(env, "check", "--deploy", "--fail-level", "WARNING")

    assert result.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in result.stderr


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("change-me-to-a-long-random-string", "SECRET_KEY is still the placeholder from docker/.env.example"),
        ("short-but-random-4f8a9c", "SECRET_KEY is too weak: it needs at least 50 characters"),
        ("abcd" * 20, "(it has 80 characters, 4 different)"),
        ("django-insecure-" + secrets.token_urlsafe(50), "no 'django-insecure-' prefix"),
    ],
)
def test_production_refuses_to_start_with_a_weak_secret_key(tmp_path, key, message):
    result = manage(production_env(tmp_path, SECRET_KEY=key), "check")

    assert result.returncode != 0
    assert message in result.stderr
    assert "secrets.token_urlsafe(50)" in result.stderr  # how to make a good one


def test_the_placeholder_is_the_one_docker_env_example_ships():
    assert env_example()["SECRET_KEY"] == "change-me-to-a-long-random-string"


def test_a_local_setup_with_debug_on_keeps_working_without_a_real_key(tmp_path):
    result = manage(production_env(tmp_path, DEBUG="1", SECRET_KEY="change-me-to-a-long-random-string"), "check")

    assert result.returncode == 0, result.stderr


# --- /healthz ---------------------------------------------------------------------------------------


def test_healthz_answers_ok_when_the_database_and_the_broker_are_up(client, db, redis_broker_url):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"database": "ok", "broker": "ok"}
    assert response["Cache-Control"] == "no-store"


def test_healthz_needs_no_login_and_ignores_the_host_and_the_https_redirect(client, db, redis_broker_url, settings):
    settings.ALLOWED_HOSTS = ["logtune.example.com"]
    settings.SECURE_SSL_REDIRECT = True

    assert client.get("/login/", HTTP_HOST="172.18.0.5:8000").status_code == 400  # not an allowed host
    assert client.get("/login/", HTTP_HOST="logtune.example.com").status_code == 301  # to https
    response = client.get("/healthz", HTTP_HOST="172.18.0.5:8000")
    assert response.status_code == 200
    assert response.json() == {"database": "ok", "broker": "ok"}
    assert client.head("/healthz", HTTP_HOST="127.0.0.1:8000").status_code == 200


def test_healthz_answers_503_naming_the_broker_when_it_is_unreachable(client, db, redis_broker_url, monkeypatch):
    monkeypatch.setenv("CELERY_BROKER_URL", f"redis://127.0.0.1:{closed_port()}/11")  # Celery reads it first

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json() == {"database": "ok", "broker": "unavailable"}


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never answers: a hung broker."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


def test_healthz_does_not_hang_on_a_broker_that_never_answers(
    client, db, redis_broker_url, monkeypatch, silent_server
):
    monkeypatch.setenv("CELERY_BROKER_URL", f"redis://127.0.0.1:{silent_server}/11")
    answers: list = []

    def get() -> None:
        try:
            answers.append(client.get("/healthz"))
        finally:
            connections.close_all()  # this thread's own connection, or the test database cannot be dropped

    # In a thread, so that a probe that hangs fails this test instead of blocking the suite.
    probe = threading.Thread(target=get, daemon=True)
    started = time.monotonic()
    probe.start()
    probe.join(timeout=10)  # the probe's own timeout in docker/compose.yaml

    assert answers, "GET /healthz still waiting for the broker after 10 s"
    assert time.monotonic() - started < 5
    assert answers[0].status_code == 503
    assert answers[0].json() == {"database": "ok", "broker": "unavailable"}


def test_healthz_answers_503_naming_the_database_when_it_refuses_connections(
    client, postgres, transactional_db, redis_broker_url
):
    connection = connections["default"]
    port = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = str(closed_port())
    try:
        response = client.get("/healthz")
    finally:
        connection.close()
        connection.settings_dict["PORT"] = port

    assert response.status_code == 503
    assert response.json() == {"database": "unavailable", "broker": "ok"}


# --- docker/compose.yaml ----------------------------------------------------------------------------


def command_of(service: dict) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else command


def test_every_long_running_service_has_a_health_check():
    services = compose()["services"]
    long_running = [name for name, service in services.items() if service.get("restart") != "no"]

    assert set(long_running) == {
        "postgres", "redis", "web", "worker", "beat", "gpu-worker", "shadow-worker", "model-server"
    }  # fmt: skip
    for name in long_running:
        assert services[name]["healthcheck"]["test"], name
    assert "pg_isready" in str(services["postgres"]["healthcheck"]["test"])
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert "http://127.0.0.1:8000/healthz" in " ".join(services["web"]["healthcheck"]["test"])


@pytest.mark.parametrize(
    ("service", "queue"), [("worker", "default"), ("gpu-worker", "gpu"), ("shadow-worker", "shadow")]
)
def test_a_workers_health_check_pings_the_node_its_command_starts(service, queue):
    spec = compose()["services"][service]
    command = command_of(spec)

    assert command[:4] == ["celery", "-A", "config", "worker"]
    assert command[command.index("-Q") + 1] == queue
    node = command[command.index("-n") + 1]
    assert node == f"{queue}@%h"
    assert f'inspect ping -d "{queue}@$$HOSTNAME"' in spec["healthcheck"]["test"][1]  # $$: the container's shell


def test_the_gpu_worker_takes_one_job_at_a_time_on_a_reserved_nvidia_gpu():
    spec = compose()["services"]["gpu-worker"]
    command = command_of(spec)

    assert command[command.index("--concurrency") + 1] == "1"
    assert command[command.index("--prefetch-multiplier") + 1] == "1"
    devices = spec["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert spec["build"]["dockerfile"] == "docker/Dockerfile.gpu"


def test_beat_and_migrate_run_what_the_makefile_runs():
    services = compose()["services"]

    assert command_of(services["beat"])[:4] == ["celery", "-A", "config", "beat"]
    assert command_of(services["migrate"]) == ["python", "manage.py", "migrate", "--no-input"]
    makefile = (ROOT / "Makefile").read_text()
    assert "worker -Q default -n default@%h" in makefile and "worker -Q gpu -n gpu@%h" in makefile


def test_logtune_services_start_after_migrations_on_healthy_postgres_and_redis():
    services = compose()["services"]

    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in ("web", "worker", "beat", "gpu-worker"):
        assert services[name]["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
            "migrate": {"condition": "service_completed_successfully"},
        }, name


def test_logtune_services_read_docker_env_and_share_the_media_and_models_volumes():
    spec = compose()
    settings = env_example()
    shared = {f"media:{settings['MEDIA_ROOT']}", f"models:{settings['LOGTUNE_VAR_DIR']}/models"}

    for name in APP_SERVICES:
        service = spec["services"][name]
        assert service["env_file"] == ".env", name
        assert shared <= set(service["volumes"]), name
    assert {"pgdata:/var/lib/postgresql/data"} == set(spec["services"]["postgres"]["volumes"])
    assert {"pgdata", "media", "models"} <= set(spec["volumes"])


def referenced_variables(text: str) -> set[str]:
    """$NAME and ${NAME…} that are interpolated; $$NAME is the container's own variable, not compose's."""
    text = text.replace("$$", "")
    return set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", text))


def test_every_variable_compose_and_the_dockerfiles_use_is_in_docker_env_example():
    listed = set(env_example())
    spec = compose()
    used = referenced_variables((DOCKER / "compose.yaml").read_text())
    for service in spec["services"].values():
        used |= set(service.get("environment", {}))
    for dockerfile in ("Dockerfile", "Dockerfile.gpu"):
        text = (DOCKER / dockerfile).read_text()
        own = set(re.findall(r"^ARG ([A-Z_]+)", text, re.MULTILINE)) | {"PATH"}
        used |= referenced_variables(text) - own
        # What the images set for Logtune must agree with the example (the volumes are mounted there).
        for name in ("LOGTUNE_VAR_DIR", "MEDIA_ROOT"):
            assert re.search(rf"\b{name}={re.escape(env_example()[name])}\b", text), (dockerfile, name)

    assert used, "no variable found?"
    assert used <= listed, f"missing from docker/.env.example: {sorted(used - listed)}"


def test_the_web_service_and_the_image_start_gunicorn_with_its_config_file():
    """config/gunicorn.py carries the worker that slow clients cannot starve (docs/deploy.md#slow-clients)."""
    dockerfile = (DOCKER / "Dockerfile").read_text()
    config = (ROOT / "config" / "gunicorn.py").read_text()

    assert compose()["services"]["web"]["command"] == [
        "gunicorn",
        "-c",
        "config/gunicorn.py",
        "--bind",
        "0.0.0.0:8000",
    ]
    assert 'CMD ["gunicorn", "-c", "config/gunicorn.py", "--bind", "0.0.0.0:8000"]' in dockerfile
    assert 'worker_class = "config.gunicorn_worker.HeadFirstWorker"' in config
    assert (
        {"WEB_CONCURRENCY", "WEB_THREADS"}
        <= set(re.findall(r'environ.get\("([A-Z_]+)"', config))
        <= set(env_example())
    )


# --- docker/Dockerfile, docker/Dockerfile.gpu ------------------------------------------------------


def pip_installs(dockerfile: str) -> list[list[str]]:
    text = (DOCKER / dockerfile).read_text().replace("\\\n", " ")
    return [shlex.split(m) for m in re.findall(r"pip install ([^&\n]+)", text)]


def makefile_torch() -> str:
    match = re.search(r"pip install [^\n]*torch==([\w.]+)", (ROOT / "Makefile").read_text())
    assert match, "the Makefile pins no torch?"
    return match.group(1)


@pytest.mark.parametrize(("dockerfile", "project"), [("Dockerfile", "."), ("Dockerfile.gpu", ".[gpu]")])
def test_the_images_install_the_pinned_torch_and_then_the_project_from_pyproject(dockerfile, project):
    text = (DOCKER / dockerfile).read_text()
    installs = pip_installs(dockerfile)

    assert [args[-1] for args in installs] == ["torch==$TORCH_VERSION", project]  # nothing else, in this order
    assert re.search(rf"^ARG TORCH_VERSION={re.escape(makefile_torch())}$", text, re.MULTILINE)
    assert re.search(r"^USER logtune$", text, re.MULTILINE)  # not root


def test_the_cpu_image_takes_torch_from_the_cpu_index_and_collects_static_files():
    text = (DOCKER / "Dockerfile").read_text()

    assert text.count("\nFROM ") == 1 and "\nFROM python:3.11-slim\n" in text
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu\n" in text
    assert "manage.py collectstatic --no-input" in text


def test_the_gpu_extra_brings_bitsandbytes():
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]

    assert any(requirement.startswith("bitsandbytes") for requirement in extras["gpu"])


def test_the_docker_build_leaves_out_the_virtualenv_data_history_and_secrets():
    ignored = set((ROOT / ".dockerignore").read_text().split())

    assert {".venv", "var", ".git", "docker/.env"} <= ignored


# --- accelerate configs -----------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "kind"), [("ddp", "MULTI_GPU"), ("fsdp", "FSDP")])
def test_the_accelerate_configs_are_valid_accelerate_config_files(name, kind):
    from accelerate.commands.config.config_args import ClusterConfig

    config = ClusterConfig.from_yaml_file(str(DOCKER / "accelerate" / f"{name}.yaml"))  # unknown keys raise

    assert config.distributed_type == kind
    assert config.num_machines == 1


@pytest.fixture
def launched(tmp_path, monkeypatch) -> list[list[str]]:
    commands: list[list[str]] = []
    monkeypatch.setattr(runner, "spawn_group", lambda command, log_path, death_signal: commands.append(command))
    return commands


def fake_job(tmp_path: Path) -> SimpleNamespace:
    return SimpleNamespace(log_path=tmp_path / "train.log")


def test_the_trainer_is_launched_with_the_accelerate_config_file_when_one_is_set(tmp_path, settings, launched):
    settings.LOGTUNE_ACCELERATE_CONFIG = "/app/docker/accelerate/ddp.yaml"
    settings.LOGTUNE_GPU_PROCESSES = 4

    _launch(fake_job(tmp_path), tmp_path / "config.json")

    arguments = launched[0][launched[0].index("--quiet") :]
    assert arguments[arguments.index("--config_file") + 1] == "/app/docker/accelerate/ddp.yaml"
    assert arguments[arguments.index("--num_processes") + 1] == "4"
    assert arguments[-3:] == ["-m", TRAINER_MODULE, str(tmp_path / "config.json")]


def test_without_an_accelerate_config_the_launch_has_no_config_file(tmp_path, settings, launched):
    settings.LOGTUNE_ACCELERATE_CONFIG = ""

    _launch(fake_job(tmp_path), tmp_path / "config.json")

    assert "--config_file" not in launched[0]


PROBE = """
import os
print("probe", os.environ.get("ACCELERATE_USE_FSDP"), os.environ.get("FSDP_VERSION"),
      os.environ.get("FSDP_AUTO_WRAP_POLICY"), os.environ.get("ACCELERATE_MIXED_PRECISION"), flush=True)
"""


def test_the_real_launcher_hands_the_fsdp_config_to_the_trainer_processes(tmp_path, settings, monkeypatch):
    (tmp_path / "probe_trainer.py").write_text(PROBE)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setattr(runner, "TRAINER_MODULE", "probe_trainer")
    settings.LOGTUNE_ACCELERATE_CONFIG = str(DOCKER / "accelerate" / "fsdp.yaml")
    settings.LOGTUNE_GPU_PROCESSES = 1
    job = fake_job(tmp_path)

    process = _launch(job, tmp_path / "config.json")
    try:
        returncode = process.wait(timeout=120)
    finally:
        signal_group(process, 9)

    log = job.log_path.read_text()
    assert returncode == 0, log
    # The file's FSDP settings reach the trainer; the worker's --mixed_precision no still wins over the file.
    assert "probe true 2 TRANSFORMER_BASED_WRAP no" in log


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.gpu"])
def test_the_images_carry_the_accelerate_configs_where_docker_env_example_points(dockerfile):
    text = (DOCKER / dockerfile).read_text()

    assert "\nWORKDIR /app\n" in text and "\nCOPY docker/accelerate ./docker/accelerate\n" in text
    assert "/app/docker/accelerate/ddp.yaml" in (DOCKER / ".env.example").read_text()
