"""Fine-tune pages: the form and estimate on the dataset page, the job's page and its panels, sorting a
dataset's entries by a job's per-example losses."""

import re

import pytest
from django.utils import timezone

from curation.models import DatasetEntry
from tests.factories import DatasetEntryFactory, DatasetSnapshotFactory
from training.finetunes.runner import finetune_claim
from training.models import ExampleLoss, FineTuneJob, FineTuneStatus, LossPreview, MetricPoint

pytestmark = pytest.mark.django_db


def test_the_dataset_page_offers_the_fine_tune_form_with_the_trainers_defaults(client, editor, dataset, base_model):
    client.force_login(editor)

    page = client.get(f"/p/acme/datasets/{dataset.pk}/").content.decode()

    assert 'id="finetune-form"' in page
    assert '<option value="tiny">tiny — for tests</option>' in page
    assert 'name="lora_rank" value="16"' in page and 'name="epochs" value="3.0"' in page
    assert re.search(r'name="packing"[^>]* checked>', page)  # packing is on by default
    assert f"/p/acme/datasets/{dataset.pk}/finetune/estimate" in page


def test_the_estimate_panel_shows_examples_tokens_and_steps_or_the_problem(client, viewer, dataset, base_model):
    client.force_login(viewer)
    url = f"/p/acme/datasets/{dataset.pk}/finetune/estimate"
    form = {"base_model": "tiny", "method": "lora", "epochs": "1", "batch_size": "1", "gradient_accumulation": "1",
            "max_seq_length": "2048", "lora_rank": "16", "lora_dropout": "0.05", "warmup_ratio": "0.05",
            "scheduler": "cosine", "weight_decay": "0", "max_grad_norm": "1", "seed": "42", "freeze_layers": "0",
            "eval_every_steps": "50", "early_stopping_patience": "0", "checkpoint_every_steps": "100",
            "eval_generations": "8", "max_new_tokens": "64", "precision": "auto",
            "attn_implementation": "sdpa"}  # fmt: skip

    good = client.get(url, form).content.decode()
    bad = client.get(url, {**form, "learning_rate": "3"}).content.decode()

    assert 'data-estimate="examples">3<' in good and 'data-estimate="tokens">60<' in good
    assert 'data-estimate="steps">3<' in good
    assert "learning_rate: must be in (0, 1)" in bad


FORM = {"base_model": "tiny", "method": "lora", "epochs": "1", "batch_size": "1", "gradient_accumulation": "1",
        "max_seq_length": "2048", "lora_rank": "16", "lora_dropout": "0.05", "warmup_ratio": "0.05",
        "scheduler": "cosine", "weight_decay": "0", "max_grad_norm": "1", "seed": "42", "freeze_layers": "0",
        "eval_every_steps": "50", "early_stopping_patience": "0", "checkpoint_every_steps": "100",
        "eval_generations": "8", "max_new_tokens": "64", "precision": "auto",
        "attn_implementation": "sdpa"}  # fmt: skip


def test_the_form_starts_from_the_base_models_own_defaults(client, editor, dataset, base_model):
    base_model.default_hyperparameters = {"learning_rate": 0.01, "epochs": 10}
    base_model.save()
    client.force_login(editor)

    page = client.get(f"/p/acme/datasets/{dataset.pk}/").content.decode()

    assert 'name="learning_rate" value="0.01"' in page and 'name="epochs" value="10"' in page
    defaults = re.search(r'<script id="finetune-defaults" type="application/json">(.*?)</script>', page)[1]
    assert '"tiny": {"epochs": 10, ' in defaults and '"learning_rate": 0.01' in defaults
    assert "js/finetune_form.js" in page


def test_the_estimate_shows_time_and_cost_and_disables_start_when_nothing_would_train(
    client, viewer, dataset, base_model, settings
):
    settings.LOGTUNE_FINETUNE_MIN_TRAIN_ENTRIES = 10
    settings.LOGTUNE_GPU_HOUR_USD = 2.0
    FineTuneJob.objects.create(project=dataset.project, snapshot=DatasetSnapshotFactory(dataset=dataset),
                               model=base_model.path, status=FineTuneStatus.SUCCEEDED, finished_at=timezone.now(),
                               summary={"last_step": {"tokens_per_second": 0.01}})  # fmt: skip
    client.force_login(viewer)
    url = f"/p/acme/datasets/{dataset.pk}/finetune/estimate"

    too_few = client.get(url, FORM).content.decode()
    DatasetEntryFactory.create_batch(1200, dataset=dataset, est_tokens=1)
    enough = client.get(url, FORM).content.decode()

    assert "3 train entries: a fine-tune needs at least 10." in too_few
    assert re.search(r'<button[^>]*id="finetune-start"[^>]*hx-swap-oob="true"[^>]* disabled', too_few)
    assert 'data-estimate="examples">1,203<' in enough and 'data-estimate="steps">1,203<' in enough
    assert 'data-estimate="time">35 h 0 min<' in enough  # 1,260 tokens at 0.01 a second: 126,000 s
    assert 'data-estimate="cost">$70.00<' in enough  # one process at $2 an hour
    assert re.search(r'<button[^>]*id="finetune-start"[^>]*hx-swap-oob="true"[^>]*>', enough)
    assert " disabled" not in re.search(r'<button[^>]*id="finetune-start"[^>]*>', enough)[0]
    assert "Fewer than 200" not in enough


def test_a_dataset_below_the_minimum_is_refused_on_the_form(client, editor, dataset, base_model, settings):
    settings.LOGTUNE_FINETUNE_MIN_TRAIN_ENTRIES = 10
    client.force_login(editor)

    response = client.post(f"/p/acme/datasets/{dataset.pk}/finetune/", FORM)

    assert response.status_code == 400
    assert response.context["form"].non_field_errors() == [
        "The dataset has 3 train entries; a fine-tune needs at least 10 (a few hundred to learn a task). "
        "Add entries, or split fewer into validation."
    ]
    assert not FineTuneJob.objects.exists()


def test_submitting_the_form_queues_a_job_and_opens_its_page(client, editor, dataset, base_model):
    client.force_login(editor)
    page = client.get(f"/p/acme/datasets/{dataset.pk}/finetune/")
    form = {field.html_name: field.value() for field in page.context["form"] if field.value() is not None}
    form = {name: value for name, value in form.items() if value is not False}

    response = client.post(f"/p/acme/datasets/{dataset.pk}/finetune/", {**form, "base_model": "tiny", "max_steps": 3})

    job = FineTuneJob.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/p/acme/finetunes/{job.pk}/"
    assert (job.created_by, job.hyperparameters["max_steps"], job.hyperparameters["packing"]) == (editor, 3, True)
    shown = client.get(response["Location"]).content.decode()
    assert "Fine-tune " + str(job.pk) in shown and "waiting for a GPU worker" in shown


def test_a_bad_value_is_shown_on_its_field_and_nothing_is_queued(client, editor, dataset, base_model):
    client.force_login(editor)

    response = client.post(f"/p/acme/datasets/{dataset.pk}/finetune/",
                           {"base_model": "tiny", "method": "freeze", "epochs": "1", "batch_size": "1",
                            "gradient_accumulation": "1", "max_seq_length": "64", "lora_rank": "4",
                            "lora_dropout": "0", "warmup_ratio": "0", "scheduler": "cosine", "weight_decay": "0",
                            "max_grad_norm": "1", "seed": "1", "freeze_layers": "0", "eval_every_steps": "0",
                            "early_stopping_patience": "0", "checkpoint_every_steps": "0", "eval_generations": "0",
                            "max_new_tokens": "8", "precision": "auto", "attn_implementation": "sdpa"})  # fmt: skip

    assert response.status_code == 400
    assert response.context["form"].errors["freeze_layers"] == ["method freeze needs at least 1"]
    assert not FineTuneJob.objects.exists()


def test_a_viewer_sees_the_jobs_but_no_form_and_cannot_start_or_cancel(client, viewer, dataset, job):
    client.force_login(viewer)

    page = client.get(f"/p/acme/datasets/{dataset.pk}/").content.decode()
    start = client.post(f"/p/acme/datasets/{dataset.pk}/finetune/", {"base_model": "tiny"})
    cancel = client.post(f"/p/acme/finetunes/{job.pk}/cancel")

    assert 'id="finetune-form"' not in page and f"/p/acme/finetunes/{job.pk}/" in page
    assert (start.status_code, cancel.status_code) == (403, 403)
    assert FineTuneJob.objects.get().status == FineTuneStatus.QUEUED


def test_an_outsider_gets_404_for_the_job_page(client, outsider, job):
    client.force_login(outsider)

    assert client.get(f"/p/acme/finetunes/{job.pk}/").status_code == 404
    assert client.get(f"/p/other/finetunes/{job.pk}/").status_code == 404


def test_the_job_page_shows_progress_the_log_tail_hyperparameters_and_the_evaluation(client, owner, job):
    finetune_claim(job_id=job.pk, worker="gpu@box")
    job.output_dir.mkdir(parents=True)
    job.log_path.write_text("loading model\n" + "".join(f"step {i}\r" for i in range(3)) + "\nstep 7 of 10\n")
    FineTuneJob.objects.filter(pk=job.pk).update(
        step=7, total_steps=10, eta_seconds=95, summary={"last_step": {"loss": 0.4321, "tokens_per_second": 812.4}}
    )
    client.force_login(owner)

    page = client.get(f"/p/acme/finetunes/{job.pk}/").content.decode()

    assert 'value="0.700"' in page and "step <strong data-step>7</strong> of 10 · 70%" in page
    assert "about 1:35 left" in page and "812 tokens/s" in page and "loss 0.4321" in page
    assert "step 2\n" in page and "step 7 of 10" in page and "on gpu@box" in page
    assert "<th>max_steps</th>" in page and f"/api/v1/finetunes/{job.pk}/metrics?project=acme" in page
    assert "Cancel" in page

    FineTuneJob.objects.filter(pk=job.pk).update(
        status=FineTuneStatus.SUCCEEDED,
        evaluation={"base": {"eval_loss": 2.0, "perplexity": 7.39}, "tuned": {"eval_loss": 0.5},
                    "labels": {"base": {"accuracy": 0.25, "macro_f1": 0.2},
                               "tuned": {"accuracy": 0.9, "macro_f1": 0.85}, "classes": ["yes", "no"], "examples": 20},
                    "generations": [{"prompt": [{"role": "user", "content": "Is it?"}], "reference": "yes",
                                     "base": "maybe", "tuned": "yes"}]},
    )  # fmt: skip
    done = client.get(f"/p/acme/finetunes/{job.pk}/").content.decode()
    assert "Base model" in done and "7.39" in done and "1.65" in done  # exp(0.5), worked out for the page
    assert "0.900" in done and "0.850" in done and "maybe" in done
    assert f"/api/v1/finetunes/{job.pk}/adapter?project=acme" in done and "Playground" in done


def test_the_status_panel_reloads_the_page_once_the_job_has_finished(client, viewer, job):
    client.force_login(viewer)
    url = f"/p/acme/finetunes/{job.pk}/status"

    running = client.get(url, headers={"HX-Request": "true"})
    FineTuneJob.objects.filter(pk=job.pk).update(status=FineTuneStatus.FAILED, error="CUDA out of memory")
    finished = client.get(url, headers={"HX-Request": "true"})

    assert "HX-Refresh" not in running and 'hx-trigger="every 2s"' in running.content.decode()
    assert finished["HX-Refresh"] == "true" and "CUDA out of memory" in finished.content.decode()


def test_the_entries_sort_by_a_jobs_loss_highest_first(client, viewer, dataset, job):
    entries = list(DatasetEntry.objects.filter(dataset=dataset, split="train").order_by("id"))
    ExampleLoss.objects.bulk_create(
        [ExampleLoss(job=job, entry=entry, line=i + 1, loss=loss, tokens=2)
         for i, (entry, loss) in enumerate(zip(entries, [0.25, 3.5, 1.0], strict=True))]
    )  # fmt: skip
    client.force_login(viewer)

    page = client.get(f"/p/acme/datasets/{dataset.pk}/?loss_job={job.pk}")

    assert [entry.pk for entry in page.context["page"].entries] == [entries[1].pk, entries[2].pk, entries[0].pk]
    html = page.content.decode()
    assert "Highest loss in fine-tune" in html and ">3.500<" in html
    assert f"/entries/{entries[1].pk}/loss-preview?base_model=tiny" in html
    default = client.get(f"/p/acme/datasets/{dataset.pk}/")
    assert len(default.context["page"].entries) == 4  # by id, the validation entry too


def test_the_jobs_panel_polls_while_a_job_runs(client, viewer, dataset, job):
    client.force_login(viewer)

    panel = client.get(f"/p/acme/datasets/{dataset.pk}/finetunes/").content.decode()
    FineTuneJob.objects.filter(pk=job.pk).update(
        status=FineTuneStatus.SUCCEEDED, summary={"done": {"eval_loss": 0.25}}
    )
    finished = client.get(f"/p/acme/datasets/{dataset.pk}/finetunes/").content.decode()

    assert 'hx-trigger="every 2s"' in panel
    assert 'hx-trigger="every 2s"' not in finished and "0.250" in finished
    assert f"/p/acme/finetunes/{job.pk}/" in client.get("/p/acme/finetunes/").content.decode()


def test_a_loss_preview_is_asked_of_a_worker_once_per_version_of_the_entry(
    client, editor, dataset, base_model, django_capture_on_commit_callbacks
):
    entry = DatasetEntry.objects.filter(dataset=dataset).first()
    url = f"/p/acme/datasets/{dataset.pk}/entries/{entry.pk}/loss-preview"
    client.force_login(editor)

    with django_capture_on_commit_callbacks() as queued:
        first = client.post(url, {"base_model": "tiny"}, follow=True)
        again = client.post(url, {"base_model": "tiny"}, follow=True)
    DatasetEntry.objects.filter(pk=entry.pk).update(updated_at=timezone.now())
    with django_capture_on_commit_callbacks() as queued_after_edit:
        client.post(url, {"base_model": "tiny"})
    unknown = client.post(url, {"base_model": "nope"})

    assert first.redirect_chain == [(f"{url}?base_model=tiny", 302)]
    assert first.context["preview"] == again.context["preview"] and len(queued) == 1
    assert f"{url}/{first.context['preview'].pk}" in first.content.decode()  # polls until a worker is done
    assert len(queued_after_edit) == 1 and LossPreview.objects.count() == 2
    assert unknown.status_code == 400 and "nope" in unknown.content.decode()


def test_a_viewer_reads_a_loss_preview_but_asking_for_one_is_an_editors(
    client, viewer, editor, dataset, base_model, django_capture_on_commit_callbacks
):
    entry = DatasetEntry.objects.filter(dataset=dataset).first()
    url = f"/p/acme/datasets/{dataset.pk}/entries/{entry.pk}/loss-preview"
    client.force_login(viewer)

    with django_capture_on_commit_callbacks() as queued:
        looked = client.get(url, {"base_model": "tiny"})
        asked = client.post(url, {"base_model": "tiny"})
    client.force_login(editor)
    client.post(url, {"base_model": "tiny"})
    client.force_login(viewer)
    shown = client.get(url, {"base_model": "tiny"})

    assert looked.status_code == 200 and looked.context["preview"] is None
    assert "an editor can ask for one" in looked.content.decode()
    assert asked.status_code == 403 and queued == []
    assert shown.context["preview"] == LossPreview.objects.get(entry=entry)


def test_metric_points_are_what_the_chart_reads(client, viewer, job):
    MetricPoint.objects.create(job=job, step=1, train_loss=1.0, time=job.created_at)
    client.force_login(viewer)

    body = client.get(f"/api/v1/finetunes/{job.pk}/metrics?project=acme").json()

    assert body["points"][0]["train_loss"] == 1.0
