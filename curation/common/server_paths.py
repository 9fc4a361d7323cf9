"""Where the server keeps its files stays on the server: what members read names a file by its place in the data
folder (`finetunes/7/adapter`), never by the absolute path of MEDIA_ROOT or the var folder.

Trainers report absolute paths, and an error quotes the file it failed on; both are written through `paths_hidden`
before they are stored, and the end of a log is passed through it before it is shown.
"""

import re
from pathlib import Path

from django.conf import settings


def _roots() -> list[str]:
    """The data folders, as configured and resolved, longest first: MEDIA_ROOT is usually inside the var folder."""
    roots: set[str] = set()
    for root in (settings.MEDIA_ROOT, settings.VAR_DIR):
        for form in (Path(root), Path(root).resolve()):
            if str(form) != form.anchor:  # never "/" itself
                roots.add(str(form))
    return sorted(roots, key=len, reverse=True)


def paths_hidden(text: str) -> str:
    """`text` with every path in the data folders written relative to its folder: '/srv/logtune/var/media/
    finetunes/7/adapter' reads 'finetunes/7/adapter', the folder itself '.'. A path that merely starts alike
    (/srv/logtune/variable) is left as it is."""
    for root in _roots():
        whole = rf"(?<![\w./-]){re.escape(root)}"
        text = re.sub(whole + "/", "", text)
        text = re.sub(whole + r"(?![\w.-])", ".", text)
    return text


def json_paths_hidden(value: object) -> object:
    """`paths_hidden` on every string of a JSON value (a trainer's event, a job's summary)."""
    if isinstance(value, str):
        return paths_hidden(value)
    if isinstance(value, dict):
        return {key: json_paths_hidden(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_paths_hidden(item) for item in value]
    return value


def error_text(exc: BaseException) -> str:
    """What a failed job says about `exc`: its type and message, the files it names relative to the data folder."""
    return paths_hidden(f"{type(exc).__name__}: {exc}")


def media_name(path: Path) -> str:
    """A path in the data folders by its place there ('finetunes/7'); any other by itself."""
    return paths_hidden(str(path))
