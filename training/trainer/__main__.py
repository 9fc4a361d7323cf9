"""The trainer's command line: `python -m training.trainer CONFIG.json`."""

import os
import sys
import traceback
from pathlib import Path

from training.trainer.config import ConfigError, TrainConfig
from training.trainer.data import DataError
from training.trainer.events import Events
from training.trainer.loop import TrainingCancelled, train

USAGE = "usage: python -m training.trainer CONFIG.json"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
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


if __name__ == "__main__":
    sys.exit(main())
