"""Child programs of a worker: started in a process group of their own that dies with the worker, signalled as a
group, and the tail of their log for error messages."""

import contextlib
import os
import subprocess
from collections import deque
from pathlib import Path

from django.conf import settings

from curation.common.server_paths import paths_hidden

LOG_TAIL_LINES = 40


PR_SET_PDEATHSIG = 1


def _die_with_parent(sig: int) -> None:
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig)


# A child's log is read by members on the job's page: transformers' progress bars (one per model loaded), its
# advisory notes and the libraries' deprecation warnings would bury the trainer's own lines. Where the worker's
# environment sets one of these itself, its value wins.
QUIET_LIBRARIES = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "PYTHONWARNINGS": "ignore::FutureWarning,ignore::DeprecationWarning",
}


def spawn_group(
    command: list[str], log_path: Path, death_signal: int, extra_env: dict[str, str] | None = None
) -> subprocess.Popen:
    path = os.pathsep.join(filter(None, [str(settings.BASE_DIR), os.environ.get("PYTHONPATH", "")]))
    env = {**QUIET_LIBRARIES, **os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path, **(extra_env or {})}
    with log_path.open("ab") as log:
        return subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
            command, cwd=settings.BASE_DIR, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=lambda: _die_with_parent(death_signal),
        )  # fmt: skip


def signal_group(process: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)  # the child leads its own session, so its pid is the group's id


def log_tail(path: Path, lines: int) -> list[str]:
    """The last `lines` lines of a log, read from its end (a log can be large), the paths they name relative
    to the data folder (they are shown to members)."""
    try:
        with path.open("rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - 64 * 1024))
            data = log.read()
    except FileNotFoundError:
        return []
    # Progress bars redraw one line with carriage returns: keep what the last redraw shows.
    text = data.decode("utf-8", "replace").replace("\r\n", "\n").rstrip("\n")
    return [paths_hidden(line.rsplit("\r", 1)[-1]) for line in deque(text.split("\n"), maxlen=lines)] if text else []
