"""The explorer's bulk actions: review (exactly how many logs), confirm, run (`bulk_action_run`), follow a job."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST, require_safe

from curation.common.views import AuthenticatedRequest, is_htmx, membership_or_404, page_context, plural
from curation.logs.bulk import services as bulk_services
from curation.logs.bulk.forms import BulkForm
from curation.logs.bulk.selectors import BulkReview, bulk_job_get, bulk_review
from curation.logs.bulk.services import BulkCountChanged, BulkOutcome
from curation.logs.links import filter_query, next_url
from curation.models import BulkAction, Role


def _selection(data: dict) -> dict:
    """The form's choice of logs as the service takes it: `ids`, or the filter `query`."""
    return {"ids": data["ids"]} if data["scope"] == "selected" else {"query": data["filter"]}


def in_datasets_note(in_datasets: int, count: int) -> str:
    """What deleting logs does to the datasets they are in: their entries keep a copy."""
    if not in_datasets:
        return "None of them is in a dataset." if count > 1 else "It is in no dataset."
    if count == 1:
        return "It is in a dataset; its entries keep their copy."
    verb = "is in a dataset" if in_datasets == 1 else "are in datasets"
    return f"{in_datasets:,} of these {count:,} logs {verb}; their entries keep their copies."


def _bulk_summary(data: dict, count: int, in_datasets: int = 0) -> str:
    logs = plural(count)
    where = "selected" if data["scope"] == "selected" else "matching this filter"
    action = data["action"]
    if action == BulkAction.TAG_ADD:
        return f"Add {', '.join(data['tag_list'])} to {logs} {where}."
    if action == BulkAction.TAG_REMOVE:
        return f"Remove {', '.join(data['tag_list'])} from {logs} {where}."
    if action == BulkAction.DATASET_ADD:
        target = f"new dataset '{data['new_dataset']}'" if data["new_dataset"] else f"'{data['dataset_obj'].name}'"
        return f"Add {logs} {where} to {target}."
    return f"Delete {logs} {where}. {in_datasets_note(in_datasets, count)} This cannot be undone."


def _confirm_label(action: str, count: int) -> str:
    verbs: dict[str, str] = {BulkAction.TAG_ADD: "Tag", BulkAction.TAG_REMOVE: "Untag", BulkAction.DATASET_ADD: "Add"}
    verb = verbs.get(action, "Delete")
    return f"{verb} {plural(count)}"


def _bulk_params(data: dict) -> dict:
    if data["action"] in (BulkAction.TAG_ADD, BulkAction.TAG_REMOVE):
        return {"tags": data["tag_list"]}
    if data["action"] == BulkAction.DATASET_ADD and not data.get("new_dataset"):  # a new one: the service's
        return {"dataset": data["dataset_obj"].pk}
    return {}


def _bulk_render(request: AuthenticatedRequest, template: str, context: dict) -> HttpResponse:
    """A bulk step: a fragment in the explorer's panel, or a page of its own without htmx."""
    if is_htmx(request):
        return render(request, template, context)
    if "next" not in context:
        given = request.POST if request.method == "POST" else request.GET
        wanted = {"next": given.get("next", ""), "filter": filter_query(QueryDict(given.get("filter", "")))}
        context["next"] = next_url(request, context["project"].slug, wanted)
    return render(request, "curation/explorer_bulk.html", context | {"fragment": template})


@login_required
@require_safe
def bulk_preview(request: AuthenticatedRequest, slug: str) -> HttpResponse:
    """Before acting: exactly how many logs the action will touch, and a button to go ahead."""
    membership = membership_or_404(request, slug, Role.EDITOR)
    project = membership.project
    context = page_context(request, membership)
    form = BulkForm(request.GET, project=project)
    if not form.is_valid():
        return _bulk_render(request, "curation/_bulk_confirm.html", context | {"form": form})
    data = form.cleaned_data
    try:
        review = bulk_review(project=project, action=data["action"], **_selection(data))
    except ValidationError as exc:
        form.add_error(None, "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items()))
        return _bulk_render(request, "curation/_bulk_confirm.html", context | {"form": form})
    confirm = _confirm_context(request, context, form, review)
    return _bulk_render(request, "curation/_bulk_confirm.html", confirm)


def _confirm_context(request: AuthenticatedRequest, context: dict, form: BulkForm, review: BulkReview) -> dict:
    data = form.cleaned_data
    count, in_datasets = review.matched, review.in_datasets
    is_delete = data["action"] == BulkAction.DELETE
    return context | {
        "form": form,
        "data": data,
        "count": count,
        "in_datasets": in_datasets,
        "summary": _bulk_summary(data, count, in_datasets),
        "confirm_label": _confirm_label(data["action"], count),
        "is_delete": is_delete,
        "next": next_url(request, context["project"].slug, data),
        "hidden": [
            (key, value)
            for key in ("action", "scope", "tags", "dataset", "new_dataset", "filter")
            if (value := data.get(key))
        ]
        + [("ids", log_id) for log_id in data["ids"]],
    }


@login_required
@require_POST
def bulk_run(request: AuthenticatedRequest, slug: str) -> HttpResponse:
    membership = membership_or_404(request, slug, Role.EDITOR)
    project = membership.project
    context = page_context(request, membership)
    form = BulkForm(request.POST, project=project)
    if not form.is_valid() or form.cleaned_data.get("expected") is None:
        if not form.errors:
            form.add_error(None, "Review the action first: the page confirms how many logs it touches.")
        return _bulk_render(request, "curation/_bulk_confirm.html", context | {"form": form})
    data = form.cleaned_data
    # Small actions run now, on exactly the ids counted; large ones as a job with progress.
    try:
        outcome = bulk_services.bulk_action_run(
            project=project, action=data["action"], params=_bulk_params(data), **_selection(data),
            expected=data["expected"], new_dataset=data.get("new_dataset") or "", actor=request.user,
        )  # fmt: skip
    except BulkCountChanged:
        review = bulk_review(project=project, action=data["action"], **_selection(data))
        confirm = _confirm_context(request, context, form, review) | {"changed_from": data["expected"]}
        return _bulk_render(request, "curation/_bulk_confirm.html", confirm)
    except ValidationError as exc:
        form.add_error(None, "; ".join(" ".join(v) for v in exc.message_dict.values()))
        return _bulk_render(request, "curation/_bulk_confirm.html", context | {"form": form})
    back = next_url(request, slug, data)
    if outcome.job is not None:
        message = f"Working on {plural(outcome.job.total)} in the background: progress is shown above the table."
        if not is_htmx(request):
            messages.info(request, message)
            return redirect(back)
        return render(request, "curation/_bulk_result.html", context | {"message": message, "job": outcome.job})
    message = _result_message(data, outcome)
    if not is_htmx(request):
        messages.success(request, message)
        return redirect(back)
    response = render(request, "curation/_bulk_result.html", context | {"message": message})
    response["HX-Trigger"] = "logtune:logs-changed"
    return response


def _result_message(data: dict, outcome: BulkOutcome) -> str:
    """What the bulk action did, in words; adding to a dataset links to it (a SafeString, kept so by messages)."""
    action, count, changed = data["action"], outcome.matched, outcome.changed or 0
    if action == BulkAction.TAG_ADD:
        return f"Tagged {plural(count)} with {', '.join(data['tag_list'])}."
    if action == BulkAction.TAG_REMOVE:
        return f"Removed {', '.join(data['tag_list'])} from {plural(count)}."
    if action == BulkAction.DATASET_ADD:
        dataset = outcome.dataset or data["dataset_obj"]
        already = count - changed
        return format_html(
            'Added {} to <a href="{}">{}</a>{}', plural(changed),
            reverse("dataset", args=[dataset.project.slug, dataset.pk]), dataset.name,
            f" ({already:,} were already in it)." if already else ".",
        )  # fmt: skip
    return f"Deleted {plural(changed)}."


@login_required
@require_safe
def bulk_job_panel(request: AuthenticatedRequest, slug: str, job_id: int) -> HttpResponse:
    """One bulk job's progress, polled by the explorer while it runs."""
    membership = membership_or_404(request, slug)
    job = bulk_job_get(project=membership.project, job_id=job_id)
    if job is None:
        raise Http404("Job not found")
    response = render(request, "curation/_bulk_job.html", {"project": membership.project, "job": job})
    if job.is_finished and request.GET.get("polling"):
        response["HX-Trigger"] = "logtune:logs-changed"  # the table shows what the job changed
    return response


urlpatterns = [
    path("p/<slug:slug>/logs/bulk/", bulk_preview, name="bulk-preview"),
    path("p/<slug:slug>/logs/bulk/run", bulk_run, name="bulk-run"),
    path("p/<slug:slug>/logs/bulk/jobs/<int:job_id>/", bulk_job_panel, name="bulk-job"),
]
