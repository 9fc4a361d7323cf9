"""The trainer's command line: `python -m training.trainer CONFIG.json`, or `--help` for the settings."""

import ast
import inspect
import json
import os
import re
import sys
import traceback
from dataclasses import MISSING, fields
from pathlib import Path

from training.trainer.config import ConfigError, TrainConfig
from training.trainer.data import DataError
from training.trainer.events import Events
from training.trainer.loop import TrainingCancelled, train

USAGE = "usage: python -m training.trainer CONFIG.json"

ABOUT = """
Fine-tunes a causal LM on chat conversations as CONFIG.json says, on one process; on every GPU of a machine:
    accelerate launch --num_processes N -m training.trainer CONFIG.json
Progress goes to OUTPUT_DIR/events.jsonl, the result to OUTPUT_DIR/adapter (docs/training.md).
Exit status: 0 done, 1 failed, 2 a setting or the data must be fixed, 3 cancelled (OUTPUT_DIR/CANCEL or SIGTERM).

CONFIG.json is a JSON object with these settings (TrainConfig in training/trainer/config.py); model, data_path
and output_dir are required, the others have the default shown:"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if "-h" in args or "--help" in args:
        print(help_text())
        return 0
    if len(args) != 1:
        print(USAGE, file=sys.stderr)
        return 2
    try:
        config = TrainConfig.load(args[0])
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    main_process = int(os.environ.get("RANK", "0")) == 0
    events = Events(output_dir, main_process)
    try:
        result = train(config, events=events)
    except TrainingCancelled:
        return 3
    except (ConfigError, DataError) as exc:
        events.emit("error", message=str(exc))
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        events.emit("error", message=f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
        return 1
    finally:
        events.close()
    print(f"done: {result.steps} steps, train loss {result.train_loss:.4f}, eval loss {result.eval_loss}")
    return 0


def help_text() -> str:
    """The usage, then every TrainConfig field under its section: name, type, default and its docstring."""
    lines = [USAGE, ABOUT]
    section = None
    for name, (kind, heading, doc) in config_fields().items():
        if heading != section:
            section = heading
            lines += ["", f"  {heading}:"]
        lines.append(f"    {name}: {kind} = {_default(name)}")
        lines += [f"        {line}" for line in doc.splitlines()]
    return "\n".join(lines)


def config_fields() -> dict[str, tuple[str, str, str]]:
    """name → (type, section, docstring) of TrainConfig's fields, in order. Python keeps neither the docstring
    under a field nor the `# --- section ---` comment above it, so both are read from the class's source."""
    source = inspect.getsource(TrainConfig)
    sections = {number: match[1] for number, line in enumerate(source.splitlines(), start=1)
                if (match := re.match(r"\s*# --- (.+) ---", line))}  # fmt: skip
    body = ast.parse(source).body[0]
    assert isinstance(body, ast.ClassDef)
    found = {}
    for node, after in zip(body.body, [*body.body[1:], None], strict=True):
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
            continue
        heading = sections[max((n for n in sections if n < node.lineno), default=min(sections))]
        doc = after.value.value if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) else ""
        found[node.target.id] = (ast.unparse(node.annotation), heading, inspect.cleandoc(str(doc)))
    return found


def _default(name: str) -> str:
    field = next(f for f in fields(TrainConfig) if f.name == name)
    if field.default is not MISSING:
        return json.dumps(field.default)
    if field.default_factory is not MISSING:
        return json.dumps(field.default_factory())
    return "(required)"


if __name__ == "__main__":
    sys.exit(main())
