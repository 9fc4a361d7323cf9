"""Preference pairs from people's votes on an evaluation run: a win makes the tuned answer chosen, a loss the other,
ties and even splits give nothing, the majority decides, adding again adds nothing; the API and its roles; and a
fine-tune of a dataset of pairs trains with dpo, where sft is refused."""

import pytest
from django.core.exceptions import ValidationError

from curation.datasets.pairs import SKIPPED_ALREADY_ADDED
from curation.models import AuditEvent, Dataset, DatasetKind
from tests.factories import (
    DatasetEntryFactory,
    DatasetFactory,
    EvaluationRunFactory,
    EvaluationVoteFactory,
    FineTuneJobFactory,
    UserFactory,
    qa,
)
from training.evaluation.metrics import LOSS, TIE, WIN
from training.evaluation.pairs import SKIPPED_SPLIT, SKIPPED_TIE, evaluation_pairs_from_votes, vote_pairs_count
from training.finetunes.services import finetune_create, finetune_estimate
from training.models import FineTuneJob, FineTuneStatus


@pytest.fixture
def run(project):
    job = FineTuneJobFactory(dataset=DatasetFactory(project=project), status=FineTuneStatus.SUCCEEDED)
    return EvaluationRunFactory(job=job, finished=True)  # examples "0+0?", "1+1?", "2+2?"


def vote(run, example: int, outcome: float, comparison: str = "teacher", voter=None) -> None:
    EvaluationVoteFactory(run=run, example=example, comparison=comparison, outcome=outcome,
                          voter=voter or UserFactory())  # fmt: skip


def test_a_win_prefers_the_tuned_answer_a_loss_the_other_and_a_tie_nothing(run, editor):
    vote(run, 1, WIN)
    vote(run, 2, LOSS, comparison="base")
    vote(run, 0, TIE)

    result = evaluation_pairs_from_votes(run=run, name="Voted", actor=editor)

    win, loss = result.dataset.entries.order_by("id")
    assert (result.dataset.kind, result.added, result.skipped) == (DatasetKind.PREFERENCE, 2, {SKIPPED_TIE: 1})
    assert win.messages == [{"role": "user", "content": "1+1?"}, {"role": "assistant", "content": "2."}]
    assert win.rejected == {"role": "assistant", "content": "2"}  # the logged answer
    assert (loss.messages[-1]["content"], loss.rejected["content"]) == ("maybe 2", "4.")
    assert win.provenance == {"source": "vote", "run_id": run.pk, "example": 1, "comparison": "teacher", "votes": 1}
    assert AuditEvent.objects.get(action="entries.add_pairs").count == 2


def test_the_majority_of_voters_decides_and_an_even_split_gives_nothing(run):
    for outcome in (LOSS, LOSS, WIN):
        vote(run, 0, outcome)
    vote(run, 1, WIN)
    vote(run, 1, LOSS)

    result = evaluation_pairs_from_votes(run=run, name="Voted")

    (pair,) = result.dataset.entries.all()
    assert (pair.messages[-1]["content"], pair.rejected["content"]) == ("0", "0.")  # the logged answer preferred
    assert pair.provenance["votes"] == 3
    assert result.skipped == {SKIPPED_SPLIT: 1}
    assert vote_pairs_count(run=run) == 1


def test_making_pairs_of_votes_again_adds_only_new_ones(run, project):
    target = DatasetFactory(project=project, name="Pairs", kind=DatasetKind.PREFERENCE)
    vote(run, 0, WIN)
    evaluation_pairs_from_votes(run=run, target=target)
    vote(run, 1, WIN)
    vote(run, 0, WIN)  # a second voter agrees: still the same pair

    again = evaluation_pairs_from_votes(run=run, target=target)

    assert (again.added, again.skipped) == (1, {SKIPPED_ALREADY_ADDED: 1})
    assert target.entries.count() == 2


def test_pairs_of_votes_go_only_to_a_dataset_of_pairs(run, project):
    vote(run, 0, WIN)
    chat = DatasetFactory(project=project, name="Chat")

    with pytest.raises(ValidationError, match="not preference pairs"):
        evaluation_pairs_from_votes(run=run, target=chat)
    assert not chat.entries.exists()


def test_the_api_makes_pairs_of_votes_for_editors_only(client_for, editor, viewer, run):
    vote(run, 0, WIN)
    url = f"/api/v1/finetunes/{run.job_id}/evaluations/{run.pk}/pairs?project=acme"

    refused = client_for(viewer).post(url, {"name": "Voted"}, format="json")
    assert refused.status_code == 403 and not Dataset.objects.filter(name="Voted").exists()
    made = client_for(editor).post(url, {"name": "Voted"}, format="json")
    blank = client_for(editor).post(url, {}, format="json")

    assert made.status_code == 200
    assert (made.json()["added"], made.json()["dataset"]["kind"], made.json()["dataset"]["entries"]) == (
        1, "preference", 1,
    )  # fmt: skip
    assert blank.status_code == 400 and "Name the new dataset" in blank.json()["name"][0]


# --- fine-tunes of a dataset of pairs --------------------------------------------------------------------------------


@pytest.fixture
def pairs(project):
    dataset = DatasetFactory(project=project, name="Pairs", kind=DatasetKind.PREFERENCE)
    for i in range(3):
        DatasetEntryFactory(dataset=dataset, messages=qa(f"{i}+{i}?", str(2 * i)), rejected=qa("", "no")[1])
    return dataset


def test_a_fine_tune_of_pairs_trains_with_dpo_by_default(pairs, base_model, editor, settings):
    settings.LOGTUNE_FINETUNE_MIN_TRAIN_ENTRIES = 1

    job = finetune_create(dataset=pairs, base_model="tiny", hyperparameters={"dpo_beta": 0.2}, created_by=editor)

    assert (job.hyperparameters["objective"], job.hyperparameters["dpo_beta"]) == ("dpo", 0.2)
    assert job.snapshot.rows_train == 3
    assert finetune_estimate(dataset=pairs, hyperparameters={})["examples"] == 3


def test_sft_on_pairs_and_dpo_on_conversations_are_refused_naming_the_objective(pairs, dataset, base_model):
    with pytest.raises(ValidationError) as sft:
        finetune_create(dataset=pairs, base_model="tiny", hyperparameters={"objective": "sft"})
    with pytest.raises(ValidationError) as dpo:
        finetune_create(dataset=dataset, base_model="tiny", hyperparameters={"objective": "dpo"})

    assert "holds preference pairs" in sft.value.message_dict["objective"][0]
    assert "holds conversations" in dpo.value.message_dict["objective"][0]
    assert not FineTuneJob.objects.exists()


def test_the_api_refuses_sft_on_pairs_with_a_400(key_client, pairs, base_model):
    body = {"dataset": pairs.pk, "base_model": "tiny", "hyperparameters": {"objective": "sft"}}

    response = key_client.post("/api/v1/finetunes", body, format="json")

    assert response.status_code == 400 and "sft" in response.json()["hyperparameters"]["objective"][0]


def test_the_fine_tune_page_makes_pairs_of_votes_for_editors(client, editor, viewer, run):
    vote(run, 0, WIN)
    url = f"/p/acme/finetunes/{run.job_id}/evaluations/{run.pk}/pairs"
    client.force_login(viewer)
    refused = client.post(url, {"name": "Voted"})
    client.force_login(editor)
    page = client.get(f"/p/acme/finetunes/{run.job_id}/")

    made = client.post(url, {"name": "Voted"}, follow=True)

    assert refused.status_code == 403
    assert b"Make preference pairs from votes" in page.content
    assert b"Added 1 pair to Voted" in made.content
    assert Dataset.objects.get(name="Voted").entries.count() == 1


def test_the_fine_tune_form_of_a_dataset_of_pairs_offers_dpo_settings(client, editor, pairs, dataset, base_model):
    client.force_login(editor)

    of_pairs = client.get(f"/p/acme/datasets/{pairs.pk}/")
    of_chat = client.get(f"/p/acme/datasets/{dataset.pk}/")

    assert b"DPO beta" in of_pairs.content and b'name="dpo_label_smoothing"' in of_pairs.content
    assert b"DPO beta" not in of_chat.content
