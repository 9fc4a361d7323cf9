"""Fine-tuning in the browser: start a job from the dataset page with a live estimate, then watch its page
(status, loss chart) until it succeeds. A real GPU-queue worker runs a fake trainer that keeps the
trainer's contract, so the page sees real progress in a few seconds."""

import re

import pytest
from playwright.sync_api import expect

from curation.models import Dataset, Split
from tests.browser.test_datasets import shot
from tests.factories import DatasetEntryFactory, DatasetFactory, FineTuneJobFactory, MetricPointFactory, qa
from tests.training import conftest as training
from training.models import BaseModel, FineTuneJob, FineTuneStatus

# The fine-tune worker's fixtures, shared with the tests of tests/training.
fake_trainer, gpu_worker = training.fake_trainer, training.gpu_worker

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def dataset_of_six_sums(project) -> Dataset:
    """Math: five sums to train on and a sixth held out for validation, 12 tokens each."""
    dataset = DatasetFactory(project=project, name="Math")
    for i in range(6):
        split = Split.VALIDATION if i == 5 else Split.TRAIN
        DatasetEntryFactory(dataset=dataset, messages=qa(f"{i}+{i}?", str(2 * i)), est_tokens=12, split=split)
    return dataset


def test_an_editor_starts_a_fine_tune_and_watches_it_succeed(
    editor,
    dataset_of_six_sums,
    base_model,
    fake_trainer,
    gpu_worker,
    log_in,
    page,
):
    log_in("bob")
    page.goto(f"/p/acme/datasets/{dataset_of_six_sums.pk}/")
    form = page.locator("#finetune-form")
    expect(form).to_be_visible()
    expect(form.locator("[data-estimate=examples]")).to_have_text("5")

    form.locator("input[name=batch_size]").fill("1")
    form.locator("input[name=gradient_accumulation]").fill("1")
    form.locator("input[name=max_steps]").fill("5")
    expect(form.locator("[data-estimate=steps]")).to_have_text("5")
    page.locator("details.advanced summary").click()
    expect(form.locator("input[name=packing]")).to_be_checked()
    shot(page, "finetune-form")
    page.on("dialog", lambda dialog: dialog.accept())
    form.locator("button[type=submit]").click()

    page.wait_for_url(re.compile(r"/p/acme/finetunes/\d+/$"))
    job = FineTuneJob.objects.get()
    expect(page.locator("h1")).to_contain_text(f"Fine-tune {job.pk}")
    expect(page.locator("h1 .status")).to_have_text("Succeeded", timeout=60_000)
    # Train and eval loss, and the gap between them at each evaluation.
    expect(page.locator("#loss-chart svg path.line")).to_have_count(3, timeout=10_000)
    expect(page.locator("#fit-note")).to_contain_text("Lowest validation loss")
    expect(page.locator("#lr-chart svg path.line")).to_have_count(1)
    expect(page.locator("#evaluation")).to_contain_text("Fine-tuned")
    expect(page.locator("#artifacts")).to_contain_text("Adapter (zip)")
    expect(page.locator("#loss-chart circle title").first).to_contain_text("train loss at step 1")
    shot(page, "finetune")

    page.goto(f"/p/acme/datasets/{dataset_of_six_sums.pk}/")
    expect(page.locator("#finetune-jobs")).to_contain_text("Succeeded")
    page.locator("select[name=loss_job]").select_option(str(job.pk))
    page.click("text=Search")
    expect(page.locator("table.entries tbody tr")).to_have_count(5)
    expect(page.locator("table.entries td.loss").first).to_have_text("0.500")


def test_the_loss_chart_marks_the_best_evaluation_and_says_when_the_validation_loss_rises_after_it(
    editor, dataset_of_six_sums, log_in, page
):
    job = FineTuneJobFactory(dataset=dataset_of_six_sums, status=FineTuneStatus.SUCCEEDED)
    evals = {0: 2.0, 4: 1.2, 8: 0.9, 12: 1.1, 16: 1.3}  # best at step 8, then 44% worse: overfitting
    for step in range(17):
        train = 2.0 - step * 0.1 if step else None
        MetricPointFactory(job=job, step=step, train_loss=train, eval_loss=evals.get(step))
    log_in("bob")

    page.goto(f"/p/acme/finetunes/{job.pk}/")

    expect(page.locator("#loss-chart g.mark")).to_have_count(1, timeout=10_000)
    expect(page.locator("#loss-chart")).to_have_attribute("data-best-step", "8")
    expect(page.locator("#loss-chart .mark-label")).to_have_text("best: step 8")
    expect(page.locator("#fit-note")).to_contain_text("Lowest validation loss 0.9000 at step 8")
    expect(page.locator("#fit-note")).to_contain_text("risen 44.4% since (step 16: 1.3000)")
    expect(page.locator("#fit-note")).to_contain_text("likely overfitting")
    gap = page.locator("#loss-chart g.series.dashed circle title")
    expect(gap).to_have_count(4)  # one per evaluation after the base model's
    expect(gap.last).to_have_text("gap (eval − train) at step 16: 0.75")  # 1.3 less the mean train loss of 13-16
    shot(page, "finetune-overfitting")


def test_an_editor_deletes_the_weights_then_the_fine_tune_each_after_reading_what_goes(
    editor, dataset_of_six_sums, base_model, log_in, page
):
    from training.finetunes.services import finetune_create

    job = finetune_create(dataset=dataset_of_six_sums, base_model=base_model, hyperparameters={"max_steps": 2})
    job.adapter_dir.mkdir(parents=True)
    (job.adapter_dir / "adapter_model.safetensors").write_bytes(bytes(2048))
    FineTuneJob.objects.filter(pk=job.pk).update(status="succeeded")
    log_in("bob")
    page.goto(f"/p/acme/finetunes/{job.pk}/")

    page.click("text=Delete weights only…")
    expect(page.locator("#delete-weights [data-size=weights]")).to_have_text("2.0\xa0KB")
    expect(page.locator("#delete-finetune")).to_contain_text("the job: its hyperparameters, evaluation and history")
    shot(page, "finetune-delete")
    page.click("button:has-text('Delete weights only')")

    expect(page.locator(".flash.success")).to_contain_text(f"Deleted the weights of fine-tune {job.pk}")
    expect(page.locator("#artifacts")).to_contain_text("The weights were deleted on")
    expect(page.locator("#artifacts")).to_contain_text("by bob")
    page.click("text=Delete…")
    page.click(f"button:has-text('Delete fine-tune {job.pk}')")

    expect(page.locator(".flash.success")).to_contain_text(f"Deleted fine-tune {job.pk}")
    assert page.url.endswith(f"/p/acme/datasets/{dataset_of_six_sums.pk}/")
    assert not FineTuneJob.objects.exists()


def test_choosing_a_base_model_puts_its_defaults_in_the_form_and_start_waits_for_enough_entries(
    editor, dataset_of_six_sums, base_model, log_in, page, settings
):
    settings.LOGTUNE_FINETUNE_MIN_TRAIN_ENTRIES = 10
    BaseModel.objects.create(name="demo", path="/models/demo", default_hyperparameters={"learning_rate": 0.01,
                                                                                       "epochs": 10})  # fmt: skip
    log_in("bob")
    page.goto(f"/p/acme/datasets/{dataset_of_six_sums.pk}/")
    form = page.locator("#finetune-form")
    expect(form.locator("[data-estimate=refused]")).to_contain_text("5 train entries: a fine-tune needs at least 10")
    expect(form.locator("#finetune-start")).to_be_disabled()

    form.locator("select[name=base_model]").select_option("demo")
    expect(form.locator("input[name=learning_rate]")).to_have_value("0.01")
    expect(form.locator("input[name=epochs]")).to_have_value("10")
    form.locator("select[name=base_model]").select_option("tiny")
    expect(form.locator("input[name=learning_rate]")).to_have_value("")
    expect(form.locator("input[name=epochs]")).to_have_value("3")

    for i in range(5):
        DatasetEntryFactory(dataset=dataset_of_six_sums, messages=qa(f"{i}*2?", str(2 * i)), est_tokens=12)
    form.locator("input[name=lora_rank]").fill("8")  # any change asks for the estimate again
    expect(form.locator("[data-estimate=examples]")).to_have_text("10")
    expect(form.locator("#finetune-start")).to_be_enabled()
    expect(form.locator("[data-estimate=warning]")).to_contain_text("Fewer than 200 train entries")
