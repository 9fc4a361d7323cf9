"""Pre-flight checks: each one fires on a crafted entry, names exactly the offending entries, and stays
quiet on clean ones."""

import pytest

from curation.datasets import validation
from curation.datasets.validation import (
    DUPLICATE_EXACT,
    DUPLICATE_NORMALISED,
    EMPTY_DATASET,
    EMPTY_MESSAGE,
    ERROR,
    FEW_EXAMPLES,
    INVALID_ROLE,
    LAST_NOT_ASSISTANT,
    SPLIT_OVERLAP,
    TOO_LONG,
    TOOL_ARGUMENTS,
    WARNING,
    dataset_validate,
    fold,
)
from curation.models import Dataset, DatasetEntry, Split
from curation.text.tokens import est_tokens
from tests.factories import DatasetFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def crafted_dataset(project) -> Dataset:
    """Checks: empty; each test adds the crafted entries it checks (`add`)."""
    return DatasetFactory(project=project, name="Checks")


def qa(question: str, answer: str = "Fine.") -> list[dict]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def add(
    dataset: Dataset, messages: list, *, split: str = Split.TRAIN, tools: list | None = None, tokens: int = 10
) -> int:
    """An entry stored as is, so the checks see exactly what a bad import or a direct write could leave."""
    entry = DatasetEntry.objects.create(
        dataset=dataset, messages=messages, tools=tools or [], split=split, turns=len(messages), est_tokens=tokens
    )
    return entry.pk


@pytest.fixture
def clean(crafted_dataset) -> list[int]:
    return [
        add(crafted_dataset, qa("What is 2 + 2?", "4")),
        add(crafted_dataset, [{"role": "system", "content": "Be brief."}, *qa("Capital of France?", "Paris.")]),
        add(
            crafted_dataset,
            [
                {"role": "user", "content": "Weather in Paris?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "18C"},
                {"role": "assistant", "content": "18C."},
            ],
        ),
        add(
            crafted_dataset,
            [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]},
                {"role": "assistant", "content": [{"type": "text", "text": "A cat."}]},
            ],
        ),
        add(crafted_dataset, qa("Translate 'hello'", "Bonjour"), split=Split.VALIDATION),
    ]


def codes(report: validation.ValidationReport) -> set[str]:
    return {finding.code for finding in report.findings}


def ids_of(report: validation.ValidationReport, code: str) -> list[int]:
    finding = report.get(code)
    assert finding is not None, f"{code} did not fire: {codes(report)}"
    assert finding.count == len(finding.entry_ids)
    return finding.entry_ids


def test_a_clean_dataset_only_warns_that_it_is_small(crafted_dataset, clean):
    report = dataset_validate(dataset=crafted_dataset)

    assert codes(report) == {FEW_EXAMPLES}
    assert report.ok
    assert (report.entries, report.get(FEW_EXAMPLES).count) == (5, 4)  # training examples only
    assert "valid roles" in report.passed and "no train/validation overlap" in report.passed


def test_an_entry_that_does_not_end_with_an_assistant_turn_is_an_error(crafted_dataset, clean):
    unanswered = add(crafted_dataset, [{"role": "user", "content": "Hello?"}])
    tool_last = add(crafted_dataset, [*qa("a"), {"role": "tool", "tool_call_id": "x", "content": "y"}])
    empty = add(crafted_dataset, [])

    report = dataset_validate(dataset=crafted_dataset)

    assert ids_of(report, LAST_NOT_ASSISTANT) == [unanswered, tool_last, empty]
    assert report.get(LAST_NOT_ASSISTANT).severity == ERROR
    assert not report.ok


def test_unknown_roles_and_non_messages_are_errors(crafted_dataset, clean):
    robot = add(crafted_dataset, [{"role": "robot", "content": "beep"}, {"role": "assistant", "content": "ok"}])
    developer = add(crafted_dataset, [{"role": "developer", "content": "x"}, {"role": "assistant", "content": "ok"}])
    not_a_message = add(crafted_dataset, ["hello", {"role": "assistant", "content": "ok"}])

    assert ids_of(dataset_validate(dataset=crafted_dataset), INVALID_ROLE) == [robot, developer, not_a_message]


def test_empty_messages_are_errors_but_a_tool_call_without_text_is_not(crafted_dataset, clean):
    blank = add(crafted_dataset, qa("   \n"))
    null_answer = add(crafted_dataset, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": None}])
    empty_parts = add(crafted_dataset, [{"role": "user", "content": [{"type": "text", "text": " "}]}, *qa("x")[1:]])
    refusal = add(
        crafted_dataset, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": None, "refusal": "No."}]
    )

    report = dataset_validate(dataset=crafted_dataset)

    assert ids_of(report, EMPTY_MESSAGE) == [blank, null_answer, empty_parts]
    assert refusal not in report.get(EMPTY_MESSAGE).entry_ids


def test_tool_call_arguments_that_are_not_json_are_errors(crafted_dataset, clean):
    def call(arguments: object) -> list[dict]:
        calls = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": arguments}}]
        return [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": None, "tool_calls": calls},
            {"role": "tool", "tool_call_id": "c", "content": "ok"},
            {"role": "assistant", "content": "done"},
        ]

    unquoted = add(crafted_dataset, call("{city: Paris}"))
    cut_off = add(crafted_dataset, call('{"city": "Par'))
    not_a_string = add(crafted_dataset, call({"city": "Paris"}))
    add(crafted_dataset, call("[]"))

    assert ids_of(dataset_validate(dataset=crafted_dataset), TOOL_ARGUMENTS) == [unquoted, cut_off, not_a_string]


def test_entries_over_the_chosen_max_tokens_are_errors(crafted_dataset, clean):
    add(crafted_dataset, qa("x" * 400), tokens=est_tokens("x" * 400))  # exactly at the limit
    over = add(crafted_dataset, qa("x" * 404), tokens=est_tokens("x" * 401))

    report = dataset_validate(dataset=crafted_dataset, max_tokens=100)

    assert ids_of(report, TOO_LONG) == [over]
    assert "100 tokens" in report.get(TOO_LONG).message
    assert TOO_LONG not in codes(dataset_validate(dataset=crafted_dataset, max_tokens=1000))


def test_an_exact_duplicate_names_the_later_copies(crafted_dataset, clean):
    copy = add(crafted_dataset, qa("What is 2 + 2?", "4"))
    second_copy = add(crafted_dataset, qa("What is 2 + 2?", "4"))
    add(crafted_dataset, qa("What is 2 + 2?", "4"), tools=[{"type": "function", "function": {"name": "calc"}}])

    report = dataset_validate(dataset=crafted_dataset)

    assert ids_of(report, DUPLICATE_EXACT) == [copy, second_copy]
    assert report.get(DUPLICATE_EXACT).severity == WARNING


def test_a_duplicate_up_to_case_whitespace_and_punctuation_is_a_normalised_duplicate(crafted_dataset, clean):
    shouted = add(crafted_dataset, qa("WHAT is 2 + 2", "4."))
    spaced = add(crafted_dataset, qa("What  is\n2+2 ?", "4"))
    accented = add(crafted_dataset, qa("Ça va ?", "Très bien !"))
    accented_copy = add(crafted_dataset, qa("ÇA VA", "très  bien"))
    add(
        crafted_dataset, [{"role": "system", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "4"}]
    )  # role differs
    held_out_copy = add(crafted_dataset, qa("translate HELLO", "bonjour"), split=Split.VALIDATION)

    report = dataset_validate(dataset=crafted_dataset)

    assert ids_of(report, DUPLICATE_NORMALISED) == [shouted, spaced, accented_copy, held_out_copy]
    assert DUPLICATE_EXACT not in codes(report)
    assert accented not in report.get(DUPLICATE_NORMALISED).entry_ids


def test_a_validation_entry_also_in_train_is_an_overlap_whichever_comes_first(crafted_dataset, clean):
    leaked = add(crafted_dataset, qa("what is 2+2", "4"), split=Split.VALIDATION)  # the first clean entry, normalised
    first_in_validation = add(crafted_dataset, qa("Name a colour.", "Blue."), split=Split.VALIDATION)
    add(crafted_dataset, qa("name a colour", "blue"))  # its train twin comes later
    add(crafted_dataset, qa("Translate 'hello'!", "Bonjour"), split=Split.VALIDATION)  # validation twice: no overlap

    report = dataset_validate(dataset=crafted_dataset)

    assert ids_of(report, SPLIT_OVERLAP) == [leaked, first_in_validation]
    assert report.get(SPLIT_OVERLAP).severity == ERROR


def test_two_hundred_training_examples_are_enough(crafted_dataset):
    DatasetEntry.objects.bulk_create(
        [
            DatasetEntry(dataset=crafted_dataset, messages=qa(f"question {i}"), turns=2, est_tokens=3)
            for i in range(199)
        ]
        + [
            DatasetEntry(dataset=crafted_dataset, messages=qa(f"held out {i}"), split=Split.VALIDATION)
            for i in range(20)
        ]
    )
    assert dataset_validate(dataset=crafted_dataset).get(FEW_EXAMPLES).count == 199

    add(crafted_dataset, qa("one more"))

    assert FEW_EXAMPLES not in codes(dataset_validate(dataset=crafted_dataset))


def test_an_empty_dataset_is_an_error_and_nothing_passes(crafted_dataset):
    report = dataset_validate(dataset=crafted_dataset)

    assert codes(report) == {EMPTY_DATASET}
    assert report.passed == []


def test_a_finding_keeps_the_first_ids_and_counts_them_all(crafted_dataset, clean):
    bad = [add(crafted_dataset, [{"role": "user", "content": f"q{i}"}]) for i in range(5)]

    finding = dataset_validate(dataset=crafted_dataset, cap=2).get(LAST_NOT_ASSISTANT)

    assert finding is not None
    assert (finding.entry_ids, finding.count, finding.truncated) == (bad[:2], 5, True)


def test_errors_are_listed_before_warnings(crafted_dataset, clean):
    add(crafted_dataset, qa("What is 2 + 2?", "4"))
    add(crafted_dataset, [{"role": "user", "content": "open"}])

    severities = [finding.severity for finding in dataset_validate(dataset=crafted_dataset).findings]

    assert severities == sorted(severities, key=lambda severity: severity != ERROR)
    assert severities[0] == ERROR and severities[-1] == WARNING


def test_the_checks_stream_in_batches_with_the_same_result(crafted_dataset, clean, monkeypatch):
    add(crafted_dataset, qa("What is 2 + 2?", "4"))
    whole = dataset_validate(dataset=crafted_dataset)
    monkeypatch.setattr(validation, "BATCH", 2)

    assert dataset_validate(dataset=crafted_dataset) == whole


def test_folding_ignores_case_whitespace_and_punctuation_but_not_words():
    assert fold("Hello,  World!\n") == fold("hello world") == fold("HELLO—WORLD…")
    assert fold("Straße") == fold("STRASSE")
    assert fold("hello world") != fold("hello word")
