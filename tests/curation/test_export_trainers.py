"""Exports as the trainers read them: Hugging Face `datasets` loads each file, TRL's SFTTrainer and DPOTrainer take a
step or two on it with a tiny local model (tests/training/tiny.py), nothing downloaded. docs/export.md says which
export each trainer wants."""

from pathlib import Path

import pytest

from curation.datasets.export import export_stream
from curation.datasets.export.columns import message_from_columns
from curation.datasets.services import dataset_add_logs, entry_update
from curation.logs.services import logs_ingest
from curation.models import Dataset, DatasetEntry, LogEntry
from tests.training.tiny import FRUITS, build_tiny_model, colour_conversation

datasets = pytest.importorskip("datasets", reason="the dev extra installs `datasets`: pip install -e '.[dev]'")
trl = pytest.importorskip("trl", reason="the dev extra installs `trl`: pip install -e '.[dev]'")

pytestmark = pytest.mark.django_db

PARAMETERS = {"type": "object", "properties": {"fruit": {"type": "string"}}}
TOOLS = [
    {
        "type": "function",
        "function": {"name": "colour_of", "description": "A fruit's colour", "parameters": PARAMETERS},
    }
]
CALL = {"id": "c1", "type": "function", "function": {"name": "colour_of", "arguments": '{"fruit":"plum"}'}}
TOOL_CHAT = [
    {"role": "system", "content": "Answer with one word."},
    {"role": "user", "content": [{"type": "text", "text": "What colour is a plum?"},
                                 {"type": "image_url", "image_url": {"url": "https://example.com/plum.jpg"}}]},
    {"role": "assistant", "content": None, "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "c1", "content": "purple"},
    {"role": "assistant", "content": "purple"},
]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_chat_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    yield
    # TRL's trainers set up accelerate's process-wide state; the trainer's own tests, later in this process, set up
    # theirs with other settings, which accelerate refuses while one is in place (accelerate's tests reset it so).
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


@pytest.fixture
def fruit_dataset(project):
    dataset = Dataset.objects.create(project=project, name="Fruit")
    for fruit in FRUITS:
        DatasetEntry.objects.create(dataset=dataset, messages=colour_conversation(fruit)["messages"])
    DatasetEntry.objects.create(dataset=dataset, messages=TOOL_CHAT, tools=TOOLS)
    return dataset


def export_file(dataset: Dataset, format: str, folder: Path) -> Path:
    export = export_stream(dataset=dataset, format=format)
    path = folder / export.filename
    path.write_bytes(b"".join(export.chunks))
    return path


def load(kind: str, path: Path, tmp_path: Path):
    return datasets.load_dataset(kind, data_files=str(path), split="train", cache_dir=str(tmp_path / "cache"))


def train_args(config_class, tmp_path: Path, **extra):
    return config_class(
        output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=2, learning_rate=1e-3,
        report_to=[], save_strategy="no", logging_steps=1, use_cpu=True, dataloader_num_workers=0, seed=0, **extra,
    )  # fmt: skip


def test_datasets_loads_the_parquet_export_as_chat_data(fruit_dataset, tmp_path):
    rows = load("parquet", export_file(fruit_dataset, "parquet", tmp_path), tmp_path)

    assert len(rows) == 9
    assert trl.data_utils.is_conversational(rows[0])
    tool_row = rows[8]
    assert [m["role"] for m in tool_row["messages"]] == ["system", "user", "assistant", "tool", "assistant"]
    assert tool_row["messages"][1]["content"] == "What colour is a plum?"
    assert tool_row["messages"][1]["parts"][1]["type"] == "image_url"  # JSON columns come decoded
    assert tool_row["messages"][2]["tool_calls"][0]["function"] == CALL["function"]
    assert tool_row["messages"][2]["extra"] == {"content": None}
    assert tool_row["tools"] == TOOLS
    assert [message_from_columns(m) for m in tool_row["messages"]] == TOOL_CHAT


def test_sft_trainer_trains_on_the_parquet_export_as_it_is(fruit_dataset, tiny_chat_model, tmp_path):
    from trl import SFTConfig, SFTTrainer

    rows = load("parquet", export_file(fruit_dataset, "parquet", tmp_path), tmp_path)
    trainer = SFTTrainer(model=str(tiny_chat_model), args=train_args(SFTConfig, tmp_path, max_length=256),
                         train_dataset=rows)  # fmt: skip
    tokens = trainer.train_dataset[8]["input_ids"]
    rendered = trainer.processing_class.decode(tokens)

    result = trainer.train()

    assert result.global_step == 2
    assert '"name": "colour_of"' in rendered  # the tools column, parsed by TRL, reached the chat template
    assert '<tool_call>{"name": "colour_of", "arguments": "{\\"fruit\\":\\"plum\\"}"}</tool_call>' in rendered


def test_sft_trainer_trains_on_the_openai_export(fruit_dataset, tiny_chat_model, tmp_path):
    from trl import SFTConfig, SFTTrainer

    text_only = Dataset.objects.create(project=fruit_dataset.project, name="Text only")
    for fruit in FRUITS:
        DatasetEntry.objects.create(dataset=text_only, messages=colour_conversation(fruit)["messages"])
    rows = load("json", export_file(text_only, "openai", tmp_path), tmp_path)

    trainer = SFTTrainer(model=str(tiny_chat_model), args=train_args(SFTConfig, tmp_path), train_dataset=rows)

    assert trainer.train().global_step == 2


@pytest.fixture
def preferences(project):
    """Edited answers of logged conversations: the fruit's colour chosen over a wrong one the log gave."""
    wrong = "blue"
    logs_ingest(project=project, items=[colour_conversation(fruit, wrong) for fruit in FRUITS])
    dataset = Dataset.objects.create(project=project, name="Colours")
    dataset_add_logs(dataset=dataset, logs=LogEntry.objects.filter(project=project))
    for entry in dataset.entries.order_by("id"):
        fruit = entry.messages[1]["content"].removeprefix("What colour is a ").removesuffix("?")
        entry_update(entry=entry, messages=colour_conversation(fruit)["messages"])
    return dataset


def test_datasets_loads_the_preference_exports(preferences, tmp_path):
    trl_rows = load("json", export_file(preferences, "preference", tmp_path), tmp_path)
    openai_rows = load("json", export_file(preferences, "openai_preference", tmp_path), tmp_path)

    assert len(trl_rows) == len(openai_rows) == len(FRUITS)
    assert trl.data_utils.is_conversational(trl_rows[0])
    assert trl_rows[0]["rejected"] == [{"role": "assistant", "content": "blue"}]
    assert openai_rows[0]["non_preferred_output"] == [{"role": "assistant", "content": "blue"}]
    assert openai_rows[0]["input"]["messages"] == trl_rows[0]["prompt"]


def test_dpo_trainer_trains_on_the_preference_export(preferences, tiny_chat_model, tmp_path):
    from trl import DPOConfig, DPOTrainer

    rows = load("json", export_file(preferences, "preference", tmp_path), tmp_path)
    trainer = DPOTrainer(model=str(tiny_chat_model), args=train_args(DPOConfig, tmp_path, max_length=128),
                         train_dataset=rows)  # fmt: skip

    assert trainer.train().global_step == 2
