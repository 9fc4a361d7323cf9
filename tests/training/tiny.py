"""A tiny chat model and learnable synthetic conversations for the trainer's tests (built locally, nothing
downloaded)."""

import json
import random
from pathlib import Path

from training.trainer.demo_model import DemoSize, build_demo_model

TINY = DemoSize(hidden_size=64, layers=2, heads=2, kv_heads=1, intermediate_size=128, vocab_size=400)

FRUITS = {"apple": "red", "banana": "yellow", "lime": "green", "plum": "purple", "orange": "orange",
          "grape": "green", "cherry": "red", "lemon": "yellow"}  # fmt: skip


def build_tiny_model(folder: Path) -> Path:
    return build_demo_model(folder, size=TINY, seed=0)


def colour_conversation(fruit: str, colour: str | None = None) -> dict:
    return {
        "messages": [
            {"role": "system", "content": "Answer with one word."},
            {"role": "user", "content": f"What colour is a {fruit}?"},
            {"role": "assistant", "content": colour or FRUITS[fruit]},
        ]
    }


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def colour_dataset(path: Path, *, train: int = 48, validation: int = 16, seed: int = 0) -> Path:
    """A task a tiny model learns in a few dozen steps: one colour word for each of eight fruits."""
    rng = random.Random(seed)
    fruits = sorted(FRUITS)
    rows = []
    for index in range(train + validation):
        row = colour_conversation(rng.choice(fruits))
        row["split"] = "train" if index < train else "validation"
        row["entry_id"] = 1000 + index
        rows.append(row)
    return write_jsonl(path, rows)
