"""`python -m config.local_env`: write this checkout's local settings file, `var/local.env`, once.

It holds a random SECRET_KEY, so `manage.py` commands run as the README writes them, without DEBUG=1 or a key
in the environment, and the key stays the same from one run to the next (sessions and stored secrets keep
working). Settings read the file for what the environment does not set (config/env.py); docs/deploy.md says why
it holds no DEBUG."""

import os
import secrets
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def local_env_path() -> Path:
    """`local.env` in the folder of local data, LOGTUNE_VAR_DIR (./var by default), as settings find it."""
    return Path(os.environ.get("LOGTUNE_VAR_DIR") or BASE_DIR / "var") / "local.env"


def local_env_write(*, path: Path) -> bool:
    """Write `path` with a new random SECRET_KEY unless it exists; whether it was written."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (
        "# Local settings of this checkout, written once by `make run` (config/local_env.py). The environment\n"
        "# overrides each of them. Production sets its own SECRET_KEY (docs/deploy.md).\n"
        f"SECRET_KEY={secrets.token_urlsafe(50)}\n"
    )
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # a secret: readable by its owner only
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    return True


if __name__ == "__main__":
    target = local_env_path()
    if local_env_write(path=target):
        print(f"Wrote {target} (a random SECRET_KEY for this checkout).", file=sys.stderr)
