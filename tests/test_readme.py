"""The README followed to the letter: after what `make run` does, on a fresh folder of local data and without
DEBUG or a SECRET_KEY in the environment, every command the README shows (its `sh` blocks, read from the README
itself) exits 0, the curls against a live server included (each answered below 400)."""

import gzip
import io
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from django.core.management import call_command

from tests.test_embedded import ROOT

README = ROOT / "README.md"
# The sections of the README that a newcomer runs after `make run`, in their order.
SECTIONS = ("Send your first log", "Curate and export", "Fine-tune")
# What the curls run against while `make run` serves http://127.0.0.1:8000: this test's own server.
README_ADDRESS = "127.0.0.1:8000"
# A curl answered 400 or more fails its block, as a failed command would.
PRELUDE = """set -euo pipefail
[ -f ../state.sh ] && source ../state.sh
curl() { command curl --silent --show-error --fail-with-body "$@"; }
"""
EPILOGUE = "\nexport -p > ../state.sh\n"


def readme_blocks() -> list[tuple[str, str]]:
    """(section, text) of every ```sh block in SECTIONS, in the README's order."""
    blocks, section = [], ""
    for match in re.finditer(r"^## (?P<head>[^\n]+)$|^```sh\n(?P<code>.*?)^```$", README.read_text(), re.M | re.S):
        if match["head"]:
            section = match["head"].strip()
        elif section in SECTIONS:
            blocks.append((section, match["code"]))
    return blocks


def make_run_recipe() -> str:
    return re.search(r"^run:.*?\n((?:\t.*\n|#.*\n)+)", (ROOT / "Makefile").read_text(), re.M)[1]  # type: ignore[index]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def log_line(number: int) -> bytes:
    """An OpenAI chat log tagged math, as the README's POST sends one."""
    a, b = number % 7, number % 5
    return orjson.dumps({
        "provider": "openai",
        "request": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"{a}+{b}?"}]},
        "response": {"object": "chat.completion", "model": "gpt-4o-mini", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": str(a + b)}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10}},
        "latency_ms": 300 + number, "tags": ["math"], "external_id": f"prod-{number}",
    })  # fmt: skip


def batch_files(folder: Path) -> None:
    """An OpenAI Batch API input file and its output file, three requests answered."""
    inputs, outputs = [], []
    for number in range(3):
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"{number}*2?"}]}
        inputs.append(orjson.dumps({"custom_id": f"b-{number}", "method": "POST", "url": "/v1/chat/completions",
                                    "body": body}))  # fmt: skip
        answer = {
            "object": "chat.completion",
            "model": "gpt-4o-mini",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": str(number * 2)}, "finish_reason": "stop"}
            ],
        }
        outputs.append(
            orjson.dumps(
                {
                    "id": f"batch_req_{number}",
                    "custom_id": f"b-{number}",
                    "error": None,
                    "response": {"status_code": 200, "request_id": "r", "body": answer},
                }
            )
        )
    (folder / "batch_input.jsonl").write_bytes(b"\n".join(inputs) + b"\n")
    (folder / "batch_output.jsonl").write_bytes(b"\n".join(outputs) + b"\n")


@pytest.fixture
def fresh_env(tmp_path: Path) -> dict[str, str]:
    """A shell on a new machine: no DEBUG, no SECRET_KEY, the embedded SQLite and file-system broker."""
    dropped = {"DEBUG", "SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL", "DJANGO_SETTINGS_MODULE"}
    env = {k: v for k, v in os.environ.items() if k not in dropped and not k.startswith(("TEST_", "LOGTUNE_"))}
    env["LOGTUNE_VAR_DIR"] = str(tmp_path / "var")  # ./var of the fresh clone
    return env


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """The clone's folder, as the README's commands see it: .venv and manage.py, and the files they name."""
    folder = tmp_path / "clone"
    folder.mkdir()
    (folder / ".venv").symlink_to(Path(sys.prefix))
    (folder / "manage.py").symlink_to(ROOT / "manage.py")
    with gzip.open(folder / "prod-logs.jsonl.gz", "wb") as file:
        file.write(b"\n".join(log_line(number) for number in range(20)) + b"\n")
    batch_files(folder)
    return folder


@pytest.fixture
def make_run(fresh_env: dict[str, str], workdir: Path) -> Iterator[str]:
    """What `make run` does (its recipe, checked below), then its web server and workers; yields the address."""
    python = str(workdir / ".venv" / "bin" / "python")
    debug = {**fresh_env, "DEBUG": "1"}  # as the Makefile starts its own processes

    def step(env: dict[str, str], *args: str) -> None:
        result = subprocess.run([python, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{shlex.join(args)}:\n{result.stderr[-3000:]}"

    step(fresh_env, "-m", "config.local_env")
    step(debug, "manage.py", "migrate", "--no-input")
    step(debug, "manage.py", "bootstrap_demo")
    step(debug, "manage.py", "create_demo_model")
    address = f"127.0.0.1:{free_port()}"
    logs = workdir.parent / "processes.log"
    with logs.open("w") as out:
        processes = [
            subprocess.Popen([python, "manage.py", "runserver", "--noreload", address], cwd=ROOT, env=debug,
                             stdout=out, stderr=subprocess.STDOUT),
            subprocess.Popen([python, "-m", "celery", "-A", "config", "worker", "-Q", "default", "--pool", "solo",
                              "-n", "default@readme"], cwd=ROOT, env=debug, stdout=out, stderr=subprocess.STDOUT),
            subprocess.Popen([python, "-m", "celery", "-A", "config", "worker", "-Q", "gpu", "--pool", "solo",
                              "-n", "gpu@readme"], cwd=ROOT, env=debug, stdout=out, stderr=subprocess.STDOUT),
        ]  # fmt: skip
        try:
            _wait_for_port(address, processes[0], logs)
            yield address
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=30)


def _wait_for_port(address: str, server: subprocess.Popen, logs: Path, seconds: float = 60) -> None:
    host, port = address.split(":")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, logs.read_text()[-3000:]
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"the web server did not listen on {address} in {seconds}s")


def _finetune_status(address: str, key: str) -> str:
    answer = subprocess.run(
        ["curl", "-s", "-H", f"Authorization: Bearer {key}", f"http://{address}/api/v1/finetunes/1"],
        capture_output=True, timeout=30, check=True,
    )  # fmt: skip
    return orjson.loads(answer.stdout)["status"]


def _wait_for_the_finetune(workdir: Path, address: str, seconds: float = 300) -> None:
    """The README's evaluation wants a finished fine-tune: wait for the one its previous block started."""
    state = (workdir.parent / "state.sh").read_text()
    key = re.search(r'LOGTUNE_API_KEY="(lt_[^"]+)"', state)[1]  # type: ignore[index]
    deadline = time.monotonic() + seconds
    status = _finetune_status(address, key)
    while status in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(1)
        status = _finetune_status(address, key)
    assert status == "succeeded", f"the README's fine-tune ended {status}"


def test_make_run_writes_the_local_settings_and_prints_its_own_address():
    recipe = make_run_recipe()

    assert "$(BIN)/python -m config.local_env" in recipe
    assert "bootstrap_demo --address $(HOST):$(PORT)" in recipe
    assert "runserver --noreload $(HOST):$(PORT)" in recipe


def test_the_readme_shows_the_commands_this_test_runs():
    blocks = readme_blocks()

    assert {section for section, _ in blocks} == set(SECTIONS)
    assert any("create_api_key" in text for _, text in blocks)
    assert all(README_ADDRESS in text for _, text in blocks if "curl" in text)


def test_the_readme_commands_work_as_written_after_make_run(make_run, fresh_env, workdir):
    address = make_run

    for number, (section, text) in enumerate(readme_blocks()):
        if "/evaluations" in text:
            _wait_for_the_finetune(workdir, address)
        script = PRELUDE + text.replace(README_ADDRESS, address) + EPILOGUE
        result = subprocess.run(
            ["bash", "-c", script], cwd=workdir, env=fresh_env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, f"{section}, block {number}:\n{text}\n{result.stdout[-2000:]}{result.stderr}"

    assert (workdir / "math.jsonl").read_text().count("\n") >= 10  # export_dataset wrote the dataset
    assert list(workdir.glob("*train*.jsonl")), "the export curl saved no file"


@pytest.mark.parametrize(
    ("address", "shown"), [("127.0.0.1:8001", "127.0.0.1:8001"), ("0.0.0.0:9000", "127.0.0.1:9000")]
)
def test_the_demo_banner_prints_the_address_make_run_listens_on(db, address, shown):
    out = io.StringIO()

    call_command("bootstrap_demo", "--address", address, stdout=out)

    assert f"at http://{shown}/" in out.getvalue()
