"""Fine-tune pages: the form and estimate on a dataset, the jobs, a job's page (progress, curves, log,
evaluation, artifacts, playground), and the loss preview of an entry."""

import math
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from curation.common.views import AuthenticatedRequest, can_edit, dataset_or_404, membership_or_404
from curation.datasets import selectors as dataset_stats
from curation.models import Dataset, DatasetEntry, Membership, Role
from training import selectors
from training.compare.selectors import MAX_JOBS as MAX_COMPARED
from training.compare.selectors import teacher_win_rate
from training.evaluation.views import evaluations_context
from training.exports.views import exports_context
from training.finetunes.deletion import finetune_delete, finetune_deletion_plan, finetune_weights_delete
from training.finetunes.services import finetune_cancel, finetune_create, finetune_estimate
from training.forms import FineTuneForm, LossPreviewForm, PlaygroundForm
from training.lookups import finetune_or_404
from training.models import EvaluationRun, FineTuneJob, FineTuneStatus
from training.playground.services import finetune_merge_request, generation_create, loss_preview_request
from training.serving.deployments.views import deploy_context

LOG_LINES = 40


def _add_errors(form: FineTuneForm, exc: ValidationError) -> None:
    """A service's errors on the form's fields; those of settings the form has no field for, named, on top."""
    errors = exc.message_dict if hasattr(exc, "error_dict") else {NON_FIELD_ERRORS: exc.messages}
    for name, problems in errors.items():
        field = name if name in form.fields else None
        for problem in problems:
            bare = field or name in (NON_FIELD_ERRORS, "dataset")  # the dataset's problem names it already
            form.add_error(field, problem if bare else f"{name}: {problem}")


# --- the form and its estimate ----------------------------------------------------------------------


@login_required
def finetune_new(request: AuthenticatedRequest, slug: str, dataset_id: int) -> HttpResponse:
    """The form on a page of its own (GET, or a POST with problems); a good POST queues the job."""
    membership, dataset = dataset_or_404(
        request, slug, dataset_id, Role.EDITOR if request.method == "POST" else Role.VIEWER
    )
    form = FineTuneForm(request.POST or None, dataset=dataset)
    if request.method == "POST" and form.is_valid():
        try:
            job = finetune_create(
                dataset=dataset, base_model=form.cleaned_data["base_model"], method=form.cleaned_data["method"],
                hyperparameters=form.hyperparameters(), snapshot=form.cleaned_data["snapshot"],
                created_by=request.user,
            )  # fmt: skip
        except ValidationError as exc:
            _add_errors(form, exc)
        else:
            messages.success(request, f"Fine-tune {job.pk} queued for a GPU worker.")
            return redirect("finetune", slug=slug, job_id=job.pk)
    context = {"project": membership.project, "dataset": dataset, "form": form, "can_edit": can_edit(membership)}
    return render(request, "training/finetune_new.html", context, status=400 if form.errors else 200)


@login_required
@require_safe
def finetune_estimate_panel(request: AuthenticatedRequest, slug: str, dataset_id: int) -> HttpResponse:
    """Examples, tokens and steps for the form's current values (htmx, as the form changes)."""
    membership, dataset = dataset_or_404(request, slug, dataset_id)
    form = FineTuneForm(request.GET, dataset=dataset)
    estimate, problems = None, []
    if form.is_valid():
        try:
            estimate = finetune_estimate(dataset=dataset, hyperparameters=form.hyperparameters(),
                                         method=form.cleaned_data["method"],
                                         base_model=form.cleaned_data["base_model"])  # fmt: skip
        except ValidationError as exc:
            problems = [f"{name}: {' '.join(p)}" for name, p in exc.message_dict.items()]
    else:
        problems = [f"{form[name].label}: {' '.join(map(str, p))}" if name in form.fields else " ".join(map(str, p))
                    for name, p in form.errors.items()]  # fmt: skip
    context = {"project": membership.project, "dataset": dataset, "estimate": estimate, "problems": problems}
    return render(request, "training/_estimate.html", context)


# --- lists ------------------------------------------------------------------------------------------


FINETUNES_PAGE_SIZE = 50
# The table's columns: (sort key, heading, a number); the sort keys are selectors.FINETUNE_SORTS'.
FINETUNE_COLUMNS = [
    ("id", "#", False), ("dataset", "Dataset", False), ("base", "Base model", False), ("method", "Method", False),
    ("learning_rate", "LR", True), ("epochs", "Epochs", True), ("lora_rank", "Rank", True),
    ("duration", "Duration", True), ("tokens_per_second", "Tokens/s", True), ("status", "Status", False),
    ("eval_loss", "Val. loss", True), ("win_rate", "Win rate", True), ("created", "Created", False),
]  # fmt: skip


@login_required
@require_safe
def finetune_list(request: AuthenticatedRequest, slug: str) -> HttpResponse:
    """Every fine-tune of the project as a table, sorted by any column (`?sort=`, `-` for descending; a name no
    column has is the default, newest first), 50 a page; a checkbox per job to compare two or more."""
    membership = membership_or_404(request, slug)
    sort = selectors.finetune_sort(request.GET.get("sort", ""))
    table = selectors.finetunes_table(project=membership.project, sort=sort)
    page = Paginator(table, FINETUNES_PAGE_SIZE).get_page(request.GET.get("page"))
    jobs = list(page.object_list)
    runs = selectors.evaluations_latest(jobs=jobs)

    def link(**query: str) -> str:
        return "?" + urlencode({"sort": sort} | query if sort != selectors.FINETUNE_SORT_DEFAULT else query)

    context = {
        "project": membership.project,
        "jobs": [finetune_row(job, runs.get(job.pk)) for job in jobs],
        "columns": [_column(key, label, number, sort) for key, label, number in FINETUNE_COLUMNS],
        "page": page,
        "previous_url": link(page=str(page.previous_page_number())) if page.has_previous() else "",
        "next_url": link(page=str(page.next_page_number())) if page.has_next() else "",
        "max_compared": MAX_COMPARED,
    }
    return render(request, "training/finetune_list.html", context)


def _column(key: str, label: str, number: bool, sort: str) -> dict:
    """A column head: its link sorts by it, ascending first, descending when it already sorts ascending."""
    current = "ascending" if sort == key else "descending" if sort == f"-{key}" else ""
    return {"key": key, "label": label, "number": number, "current": current,
            "url": "?" + urlencode({"sort": f"-{key}" if current == "ascending" else key})}  # fmt: skip


def finetune_row(job: FineTuneJob, run: EvaluationRun | None) -> dict:
    """What a table row shows of a job annotated by selectors.finetunes_table, and of its latest succeeded
    evaluation run: the judge's win rate against the logged answers, with its interval."""
    duration = job.duration  # type: ignore[attr-defined]
    return {
        "job": job,
        "learning_rate": _number(job.learning_rate),  # type: ignore[attr-defined]
        "epochs": _number(job.epochs),  # type: ignore[attr-defined]
        "duration": _duration(duration.total_seconds()) if duration is not None else "",
        "run": run,
        "win_rate": teacher_win_rate(run) if run is not None else None,
    }


def _number(value: float | None) -> str:
    """0.0002, 1e-05, 3: a setting as it was typed."""
    return "" if value is None else f"{value:g}"


@login_required
@require_safe
def dataset_finetunes_panel(request: AuthenticatedRequest, slug: str, dataset_id: int) -> HttpResponse:
    """A dataset's jobs alone, polled by its page while one is queued or running."""
    membership, dataset = dataset_or_404(request, slug, dataset_id)
    jobs = list(selectors.finetunes_for_dataset(dataset=dataset)[:10])
    context = {"project": membership.project, "dataset": dataset, "finetunes": jobs,
               "finetunes_running": any(not job.is_finished for job in jobs)}  # fmt: skip
    return render(request, "training/_finetune_jobs.html", context)


# --- one job ----------------------------------------------------------------------------------------


def _status_context(job: FineTuneJob) -> dict:
    elapsed = None
    if job.started_at:
        elapsed = ((job.finished_at or job.heartbeat_at or job.started_at) - job.started_at).total_seconds()
    return {
        "job": job,
        "elapsed": _duration(elapsed),
        "eta": _duration(job.eta_seconds),
        "last_step": job.summary.get("last_step", {}),
        "log_lines": selectors.finetune_log_tail(job=job, lines=LOG_LINES),
    }


def _duration(seconds: float | None) -> str:
    """1:05, or 2:01:05 past an hour."""
    if seconds is None or not math.isfinite(seconds):
        return ""
    hours, rest = divmod(round(max(seconds, 0)), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


@login_required
@require_safe
def finetune_detail(request: AuthenticatedRequest, slug: str, job_id: int) -> HttpResponse:
    membership, job = finetune_or_404(request, slug, job_id)
    context = {
        "project": membership.project,
        "can_edit": can_edit(membership),
        "hyperparameters": sorted(job.hyperparameters.items()),
        "evaluation": _evaluation(job.evaluation),
        "worst": list(selectors.example_losses_top(job=job, limit=10)),
        "generations": list(selectors.generations_for_job(job=job)),
        "playground_form": PlaygroundForm(),
        **_status_context(job),
        **_reward_context(job),
        **evaluations_context(job, membership),
        **exports_context(job),
        **deploy_context(request, job, membership),
    }
    return render(request, "training/finetune.html", context)


REWARD_CHARTS = ((1, "Reward margin", 0.0), (2, "Reward accuracy", 1.0))  # (value, title, a y the axis always shows)


def _reward_context(job: FineTuneJob) -> dict:
    """A DPO run's reward margin and accuracy, train and eval, as SVG polylines in a 300 by 100 box (y up)."""
    curves = selectors.reward_curves(job=job)
    if not (curves["train"] or curves["eval"]):
        return {"reward_curves": None, "reward_charts": []}
    width = max(job.total_steps, *(step for points in curves.values() for step, *_ in points), 1)
    charts = []
    for index, title, shown in REWARD_CHARTS:
        lines: dict[str, list[tuple[int, float]]] = {
            kind: [(step, float(y)) for step, *values in points if (y := values[index - 1]) is not None]
            for kind, points in curves.items()
        }
        values = [y for points in lines.values() for _, y in points]
        low, high = min(shown, 0.0, *values), max(shown, 0.0, *values)
        span = (high - low) or 1.0
        polylines = {
            kind: " ".join(f"{300 * step / width:.1f},{100 - 100 * (y - low) / span:.1f}" for step, y in points)
            for kind, points in lines.items()
        }
        last = {kind: points[-1][1] if points else None for kind, points in lines.items()}
        charts.append({"title": title, "low": low, "high": high, "lines": polylines, "last": last})
    return {"reward_curves": curves, "reward_charts": charts}


def _evaluation(evaluation: dict) -> dict | None:
    """evaluation.json, with the perplexity worked out where only the loss is given."""
    if not evaluation:
        return None
    rows = []
    for name in ("base", "tuned"):
        numbers = evaluation.get(name) or {}
        loss = numbers.get("eval_loss")
        perplexity = numbers.get("perplexity")
        if perplexity is None and isinstance(loss, int | float) and loss < 50:
            perplexity = math.exp(loss)
        rows.append({"name": "Base model" if name == "base" else "Fine-tuned", "loss": loss, "perplexity": perplexity})
    labels = evaluation.get("labels") or None
    return {"rows": rows, "labels": labels, "generations": evaluation.get("generations") or []}


@login_required
@require_safe
def finetune_status_panel(request: AuthenticatedRequest, slug: str, job_id: int) -> HttpResponse:
    """Status, progress and the log tail, polled while the job runs."""
    membership, job = finetune_or_404(request, slug, job_id)
    response = render(request, "training/_finetune_status.html", {"project": membership.project,
                                                                   **_status_context(job)})  # fmt: skip
    if request.headers.get("HX-Request") and job.is_finished:
        response["HX-Refresh"] = "true"  # the page polled a running job: reload it for the results
    return response


@login_required
@require_POST
def finetune_cancel_view(request: AuthenticatedRequest, slug: str, job_id: int) -> HttpResponse:
    _, job = finetune_or_404(request, slug, job_id, Role.EDITOR)
    try:
        job = finetune_cancel(job=job, actor=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        done = job.status == FineTuneStatus.CANCELLED
        messages.success(request, "Cancelled." if done else "Stopping after the current step…")
    return redirect("finetune", slug=slug, job_id=job_id)


@login_required
@require_POST
def finetune_merge_view(request: AuthenticatedRequest, slug: str, job_id: int) -> HttpResponse:
    _, job = finetune_or_404(request, slug, job_id, Role.EDITOR)
    try:
        finetune_merge_request(job=job, actor=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, "Merge queued for a GPU worker.")
    return redirect("finetune", slug=slug, job_id=job_id)


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def finetune_delete_view(request: AuthenticatedRequest, slug: str, job_id: int) -> HttpResponse:
    """GET: what deleting the fine-tune, or only its weights, removes and keeps; POST: delete the fine-tune."""
    membership, job = finetune_or_404(request, slug, job_id, Role.EDITOR if request.method == "POST" else Role.VIEWER)
    if request.method == "POST":
        try:
            plan = finetune_delete(job=job, actor=request.user)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
            return redirect("finetune-delete", slug=slug, job_id=job_id)
        done = f"Deleted fine-tune {job_id} and its folder ({filesizeformat(plan.folder_bytes)})."
        if plan.snapshot is not None:
            done += f" Its snapshot {plan.snapshot.sha256[:12] or plan.snapshot.pk} went with it."
        messages.success(request, done)
        if job.dataset_id is not None:
            return redirect("dataset", slug=slug, dataset_id=job.dataset_id)
        return redirect("finetunes", slug=slug)
    context = {"project": membership.project, "job": job, "can_edit": can_edit(membership),
               "plan": finetune_deletion_plan(job=job)}  # fmt: skip
    return render(request, "training/finetune_delete.html", context)


@login_required
@require_POST
def finetune_weights_delete_view(request: AuthenticatedRequest, slug: str, job_id: int) -> HttpResponse:
    _, job = finetune_or_404(request, slug, job_id, Role.EDITOR)
    try:
        plan = finetune_weights_delete(job=job, actor=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("finetune-delete", slug=slug, job_id=job_id)
    messages.success(request, f"Deleted the weights of fine-tune {job_id} ({filesizeformat(plan.weights_bytes)} "
                              "freed); its metrics and evaluation stay.")  # fmt: skip
    return redirect("finetune", slug=slug, job_id=job_id)


@login_required
@require_POST
def playground_ask(request: AuthenticatedRequest, slug: str, job_id: int) -> HttpResponse:
    membership, job = finetune_or_404(request, slug, job_id, Role.EDITOR)
    form = PlaygroundForm(request.POST)
    context: dict = {"project": membership.project, "job": job, "playground_form": form}
    if form.is_valid():
        try:
            context["generation"] = generation_create(
                job=job, messages=form.messages(), max_new_tokens=form.cleaned_data["max_new_tokens"],
                created_by=request.user,
            )  # fmt: skip
        except ValidationError as exc:
            form.add_error(None, " ".join(exc.messages))
    return render(request, "training/_generation.html", context, status=400 if form.errors else 200)


@login_required
@require_safe
def generation_panel(request: AuthenticatedRequest, slug: str, job_id: int, generation_id: int) -> HttpResponse:
    membership, job = finetune_or_404(request, slug, job_id)
    generation = selectors.generation_get(job=job, generation_id=generation_id)
    if generation is None:
        raise Http404("Generation not found")
    context = {"project": membership.project, "job": job, "generation": generation}
    return render(request, "training/_generation.html", context)


# --- an entry's loss preview ------------------------------------------------------------------------


def _entry_or_404(
    request: AuthenticatedRequest, slug: str, dataset_id: int, entry_id: int, role: str = Role.VIEWER
) -> tuple[Membership, Dataset, DatasetEntry]:
    membership, dataset = dataset_or_404(request, slug, dataset_id, role)
    entry = dataset_stats.entry_get(dataset=dataset, entry_id=entry_id)
    if entry is None:
        raise Http404("Entry not found")
    return membership, dataset, entry


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def entry_loss_preview(request: AuthenticatedRequest, slug: str, dataset_id: int, entry_id: int) -> HttpResponse:
    """Which tokens of the entry count toward the loss under a base model's chat template. GET shows the preview
    of the entry as it is now, when there is one; POST (editors) asks a worker for it, and the page polls."""
    membership, dataset, entry = _entry_or_404(
        request, slug, dataset_id, entry_id, Role.EDITOR if request.method == "POST" else Role.VIEWER
    )
    form = LossPreviewForm(request.POST if request.method == "POST" else request.GET or None)
    preview, problem = None, ""
    if form.is_valid() and request.method == "POST":
        try:
            loss_preview_request(entry=entry, base_model=form.cleaned_data["base_model"])
        except ValidationError as exc:
            problem = " ".join(exc.messages)
        else:
            url = reverse("dataset-entry-loss-preview", args=[slug, dataset.pk, entry.pk])
            return redirect(f"{url}?{urlencode({'base_model': form.cleaned_data['base_model']})}")
    elif form.is_valid():
        preview = selectors.loss_preview_current(entry=entry, base_model=form.cleaned_data["base_model"])
    context = {
        "project": membership.project, "dataset": dataset, "entry": entry, "form": form, "preview": preview,
        "problem": problem, "entry_url": reverse("dataset-entry", args=[slug, dataset.pk, entry.pk]),
        "can_edit": can_edit(membership),
    }  # fmt: skip
    return render(request, "training/loss_preview.html", context, status=400 if problem or form.errors else 200)


@login_required
@require_safe
def loss_preview_panel(
    request: AuthenticatedRequest, slug: str, dataset_id: int, entry_id: int, preview_id: int
) -> HttpResponse:
    """The preview alone, polled by its page until a worker has worked it out."""
    membership, dataset, entry = _entry_or_404(request, slug, dataset_id, entry_id)
    preview = selectors.loss_preview_get(entry=entry, preview_id=preview_id)
    if preview is None:
        raise Http404("Preview not found")
    context = {"project": membership.project, "dataset": dataset, "entry": entry, "preview": preview}
    return render(request, "training/_loss_preview.html", context)
