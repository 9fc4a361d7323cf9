"""Dataset pages: entries, editing, split, stats, validation, export."""

from dataclasses import asdict

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from curation.common.views import (
    AuthenticatedRequest,
    can_edit,
    dataset_or_404,
    error_messages,
    membership_or_404,
    whole_number_param,
)
from curation.datasets import selectors as dataset_selectors
from curation.datasets.export import snapshot_request
from curation.datasets.forms import (
    DatasetEditForm,
    DatasetForm,
    DatasetImportForm,
    EntriesAction,
    EntryForm,
    PairsForm,
    SplitForm,
    ValidationForm,
)
from curation.datasets.hooks import dataset_pages_extensions
from curation.datasets.pairs import dataset_pairs_from_edits, edit_pairs_count
from curation.datasets.selectors import EntryFilter, EntryPage, snapshots_collapsed
from curation.datasets.services import (
    dataset_create,
    dataset_delete,
    dataset_deletion_plan,
    dataset_split,
    dataset_update,
    entries_delete,
    entries_set_split,
    entry_answer_pick,
    entry_update,
)
from curation.datasets.validation import DEFAULT_MAX_TOKENS, dataset_validate
from curation.logs.imports.services import PendingImportsTooLarge, import_job_create
from curation.logs.ingest.canonical import call_name_arguments
from curation.models import Dataset, DatasetEntry, DatasetKind, JobStatus, Role
from curation.text.diffs import entry_diff
from curation.text.rendering import alternative_answers

EXPORT_FORMATS = [
    ("openai", "OpenAI chat"),
    ("sharegpt", "ShareGPT"),
    ("alpaca", "Alpaca"),
    ("prompt_completion", "Prompt / completion"),
    ("parquet", "Parquet"),
    ("preference", "Preference pairs of edited entries (TRL)"),
    ("openai_preference", "Preference pairs of edited entries (OpenAI)"),
]
# A dataset of pairs is exported as pairs only (`export_check` refuses the chat formats).
PAIRS_EXPORT_FORMATS = [("preference", "Preference pairs (TRL)"), ("openai_preference", "Preference pairs (OpenAI)")]


@login_required
@require_safe
def dataset_list(request: AuthenticatedRequest, slug: str) -> HttpResponse:
    membership = membership_or_404(request, slug)
    context = {
        "project": membership.project,
        "can_edit": can_edit(membership),
        "datasets": dataset_selectors.datasets_for_project(project=membership.project),
        "form": DatasetForm(),
    }
    return render(request, "curation/dataset_list.html", context)


@login_required
@require_POST
def dataset_new(request: AuthenticatedRequest, slug: str) -> HttpResponse:
    membership = membership_or_404(request, slug, Role.EDITOR)
    form = DatasetForm(request.POST)
    if form.is_valid():
        try:
            dataset = dataset_create(project=membership.project, created_by=request.user, **form.cleaned_data)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            return redirect("dataset", slug=slug, dataset_id=dataset.pk)
    else:
        messages.error(request, error_messages(form.errors))
    return redirect("datasets", slug=slug)


@login_required
@require_safe
def dataset_detail(request: AuthenticatedRequest, slug: str, dataset_id: int) -> HttpResponse:
    membership, dataset = dataset_or_404(request, slug, dataset_id)
    entry_filter = EntryFilter.from_params(request.GET)
    after = whole_number_param(request.GET, "after") or 0
    page, extra = _entries_page(request, dataset, entry_filter, after)
    context = {
        "project": membership.project,
        "dataset": dataset,
        "can_edit": can_edit(membership),
        "filter": entry_filter,
        "page": page,
        "rows": [(entry, *_snippets(entry.messages)) for entry in page.entries],
        "page_size": dataset_selectors.ENTRY_PAGE_SIZE,
        "next_query": _query(request, after=page.next_after),
        "first_query": _query(request, after=None),
        "split_form": SplitForm(
            initial={"validation_ratio": dataset.validation_ratio or 0.1, "seed": dataset.split_seed or 0}
        ),
        "import_form": DatasetImportForm(),
        "validation_form": ValidationForm(),
        **_imports(dataset),
        **_snapshots(dataset),
        "export_formats": PAIRS_EXPORT_FORMATS if dataset.kind == DatasetKind.PREFERENCE else EXPORT_FORMATS,
        **_pairs(dataset, can_edit(membership)),
        **extra,
    }
    for extension in dataset_pages_extensions():
        context |= extension.detail_context(dataset=dataset)
    return render(request, "curation/dataset.html", context)


def _entries_page(
    request: AuthenticatedRequest, dataset: Dataset, entry_filter: EntryFilter, after: int
) -> tuple[EntryPage, dict]:
    """A page of entries, newest first, or in another order an extension reads from the query string (a
    fine-tune's loss on each entry), with that extension's context."""
    for extension in dataset_pages_extensions():
        ordered = extension.entries_page(dataset=dataset, params=request.GET, entry_filter=entry_filter, after=after)
        if ordered is not None:
            return ordered
    return dataset_selectors.entries_page(dataset=dataset, entry_filter=entry_filter, after=after), {}


def _query(request: AuthenticatedRequest, *, after: int | None) -> str:
    """The list's query string with another page."""
    query = request.GET.copy()
    query.pop("after", None)
    if after is not None:
        query["after"] = str(after)
    return query.urlencode()


def _pairs(dataset: Dataset, editor: bool) -> dict:
    """A chat dataset's editors see how many pairs its edits give and where they may go."""
    if dataset.kind != DatasetKind.CHAT or not editor:
        return {"pairs_from_edits": None}
    targets = Dataset.objects.filter(project_id=dataset.project_id, kind=DatasetKind.PREFERENCE).only("id", "name")
    return {"pairs_from_edits": edit_pairs_count(source=dataset), "pair_targets": list(targets)}


def _imports(dataset: Dataset) -> dict:
    imports = list(dataset_selectors.imports_for_dataset(dataset=dataset)[:5])
    return {"imports": imports, "imports_running": any(not job.is_finished for job in imports)}


def _snapshots(dataset: Dataset) -> dict:
    snapshots = list(dataset_selectors.snapshots_for_dataset(dataset=dataset)[:20])
    return {
        "snapshots": snapshots_collapsed(snapshots)[:5],
        "snapshots_running": any(not s.is_finished for s in snapshots),
    }


def _snippets(conversation: object) -> tuple[str, str]:
    """The first user message and the last assistant message, as text for the list."""
    turns = conversation if isinstance(conversation, list) else []
    prompt = next((_text(m) for m in turns if isinstance(m, dict) and m.get("role") == "user"), "")
    answer = next((_text(m) for m in reversed(turns) if isinstance(m, dict) and m.get("role") == "assistant"), "")
    return prompt, answer


def _text(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, list):
        content = " ".join(
            str(part.get("text") or f"[{part.get('type')}]") for part in content if isinstance(part, dict)
        )
    if not content and message.get("tool_calls"):
        names = (call_name_arguments(call)[0] for call in message["tool_calls"] if isinstance(call, dict))
        content = "⚙ " + ", ".join(names)
    return str(content or "")


@login_required
@require_POST
def dataset_edit(request: AuthenticatedRequest, slug: str, dataset_id: int) -> HttpResponse:
    _, dataset = dataset_or_404(request, slug, dataset_id, Role.EDITOR)
    form = DatasetEditForm(request.POST)
    if form.is_valid():
        try:
            dataset_update(dataset=dataset, **form.cleaned_data, actor=request.user)
            messages.success(request, "Saved.")
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
    else:
        messages.error(request, error_messages(form.errors))
    return redirect("dataset", slug=slug, dataset_id=dataset_id)


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def dataset_delete_view(request: AuthenticatedRequest, slug: str, dataset_id: int) -> HttpResponse:
    """GET: what deleting the dataset removes and what it keeps (its fine-tunes); POST: delete it."""
    membership, dataset = dataset_or_404(
        request, slug, dataset_id, Role.EDITOR if request.method == "POST" else Role.VIEWER
    )
    name = dataset.name
    if request.method == "POST":
        try:
            plan = dataset_delete(dataset=dataset, actor=request.user)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
            return redirect("dataset-delete", slug=slug, dataset_id=dataset.pk)
        gone, kept = plan.parts()
        messages.success(request, f"Deleted dataset {name} with its {gone}. Kept {kept}.")
        return redirect("datasets", slug=slug)
    context = {
        "project": membership.project,
        "dataset": dataset,
        "can_edit": can_edit(membership),
        "plan": dataset_deletion_plan(dataset=dataset),
    }
    for extension in dataset_pages_extensions():
        context |= extension.delete_context(dataset=dataset)
    return render(request, "curation/dataset_delete.html", context)


@login_required
@require_safe
def dataset_stats_panel(request: AuthenticatedRequest, slug: str, dataset_id: int) -> HttpResponse:
    """Counts and histograms, loaded after the page so a large dataset does not slow it down."""
    membership, dataset = dataset_or_404(request, slug, dataset_id)
    stats = dataset_selectors.dataset_stats(dataset=dataset)
    context = {
        "project": membership.project,
        "dataset": dataset,
        "stats": stats,
        "token_bins": [asdict(b) for b in stats.token_bins],
        "turn_bins": [asdict(b) for b in stats.turn_bins],
        "token_bins_id": f"token-bins-{dataset.pk}",
        "turn_bins_id": f"turn-bins-{dataset.pk}",
    }
    return render(request, "curation/_dataset_stats.html", context)


@login_required
@require_safe
def dataset_validation(request: AuthenticatedRequest, slug: str, dataset_id: int) -> HttpResponse:
    membership, dataset = dataset_or_404(request, slug, dataset_id)
    form = ValidationForm(request.GET or {"max_tokens": DEFAULT_MAX_TOKENS})
    report = dataset_validate(dataset=dataset, max_tokens=form.cleaned_data["max_tokens"]) if form.is_valid() else None
    context = {"project": membership.project, "dataset": dataset, "form": form, "report": report}
    template = (
        "curation/_dataset_validation.html"
        if request.headers.get("HX-Request")
        else "curation/dataset_validation.html"
    )
    return render(request, template, context)


@login_required
@require_POST
def dataset_pairs_view(request: AuthenticatedRequest, slug: str, dataset_id: int) -> HttpResponse:
    membership, source = dataset_or_404(request, slug, dataset_id, Role.EDITOR)
    form = PairsForm(request.POST, project=membership.project)
    if not form.is_valid():
        messages.error(request, error_messages(form.errors))
        return redirect("dataset", slug=slug, dataset_id=dataset_id)
    try:
        result = dataset_pairs_from_edits(source=source, **form.cleaned_data, actor=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("dataset", slug=slug, dataset_id=dataset_id)
    skipped = "; ".join(f"{count} {reason}" for reason, count in result.skipped.most_common())
    messages.success(request, f"Added {result.added} pair{'s' if result.added != 1 else ''} to {result.dataset.name}"
                     + (f" ({skipped})." if skipped else "."))  # fmt: skip
    return redirect("dataset", slug=slug, dataset_id=result.dataset.pk)


@login_required
@require_POST
def dataset_split_view(request: AuthenticatedRequest, slug: str, dataset_id: int) -> HttpResponse:
    _, dataset = dataset_or_404(request, slug, dataset_id, Role.EDITOR)
    form = SplitForm(request.POST)
    if form.is_valid():
        train, validation = dataset_split(dataset=dataset, **form.cleaned_data, actor=request.user)
        messages.success(request, f"Split: {train} train, {validation} validation (seed {form.cleaned_data['seed']}).")
    else:
        messages.error(request, error_messages(form.errors))
    return redirect("dataset", slug=slug, dataset_id=dataset_id)


@login_required
@require_POST
def entries_action(request: AuthenticatedRequest, slug: str, dataset_id: int) -> HttpResponse:
    """Delete the selected entries or move them to a split (from the list, or from one entry's page)."""
    _, dataset = dataset_or_404(request, slug, dataset_id, Role.EDITOR)
    form = EntriesAction(request.POST)
    if not form.is_valid():
        messages.error(request, error_messages(form.errors))
    elif form.cleaned_data["action"] == "delete":
        deleted = entries_delete(dataset=dataset, ids=form.cleaned_data["ids"], actor=request.user)
        messages.success(request, f"Deleted {deleted} entr{'y' if deleted == 1 else 'ies'}.")
    else:
        moved = entries_set_split(
            dataset=dataset, ids=form.cleaned_data["ids"], split=form.cleaned_data["action"], actor=request.user
        )
        messages.success(
            request, f"Moved {moved} entr{'y' if moved == 1 else 'ies'} to {form.cleaned_data['action']}."
        )
    return redirect(_back(request, slug, dataset))


def _back(request: AuthenticatedRequest, slug: str, dataset: Dataset) -> str:
    """Where the form came from, when that is a page of this dataset (never another site)."""
    home = reverse("dataset", args=[slug, dataset.pk])
    back = request.POST.get("next", "")
    return back if back.startswith(home) else home


@login_required
def entry_detail(request: AuthenticatedRequest, slug: str, dataset_id: int, entry_id: int) -> HttpResponse:
    """The entry editor and its diff against the source log. A POST with `op` edits the form itself
    (add or remove a turn) without saving; a POST without saves through `entry_update`."""
    role = Role.EDITOR if request.method == "POST" else Role.VIEWER
    membership, dataset = dataset_or_404(request, slug, dataset_id, role)
    entry = dataset_selectors.entry_get(dataset=dataset, entry_id=entry_id)
    if entry is None:
        raise Http404("Entry not found")
    form = EntryForm.from_entry(entry.messages, entry.tools)
    if request.method == "POST":
        form = EntryForm.from_post(request.POST)
        if request.POST.get("op"):
            form.apply(request.POST["op"])
        elif _save(entry, form, request.user):
            messages.success(request, "Entry saved." if entry.edited else "Entry saved; it matches its source again.")
            return redirect("dataset-entry", slug=slug, dataset_id=dataset_id, entry_id=entry_id)
    previous, following = dataset_selectors.entry_neighbours(dataset=dataset, entry_id=entry.pk)
    context = {
        "project": membership.project,
        "dataset": dataset,
        "entry": entry,
        "can_edit": can_edit(membership),
        "form": form,
        "diff": entry_diff(entry),
        "alternatives": alternative_answers(entry.log.alternatives if entry.log else []),
        "pick_url": reverse("dataset-entry-pick", args=[slug, dataset_id, entry_id]) if can_edit(membership) else "",
        "provenance": dataset_selectors.entry_provenance(entry=entry),
        "previous": previous,
        "following": following,
        **_pair_texts(entry),
    }
    return render(request, "curation/entry.html", context, status=400 if form.errors else 200)


def _pair_texts(entry: DatasetEntry) -> dict:
    """A pair's chosen answer (the last assistant turn) and rejected one, as text; {} for a conversation."""
    if not isinstance(entry.rejected, dict):
        return {}
    replies = [m for m in entry.messages if isinstance(m, dict) and m.get("role") == "assistant"]
    return {"chosen_text": _text(replies[-1]) if replies else "", "rejected_text": _text(entry.rejected)}


@login_required
@require_POST
def entry_pick(request: AuthenticatedRequest, slug: str, dataset_id: int, entry_id: int) -> HttpResponse:
    """Make one of the source log's other answers the entry's answer (`entry_answer_pick`)."""
    _, dataset = dataset_or_404(request, slug, dataset_id, Role.EDITOR)
    entry = dataset_selectors.entry_get(dataset=dataset, entry_id=entry_id)
    if entry is None:
        raise Http404("Entry not found")
    try:
        entry_answer_pick(entry=entry, alternative=int(request.POST.get("alternative", "")), actor=request.user)
    except (ValueError, ValidationError):
        messages.error(request, "That answer is not one of the source log's.")
    else:
        messages.success(request, "Entry saved with the answer you picked.")
    return redirect("dataset-entry", slug=slug, dataset_id=dataset_id, entry_id=entry_id)


def _save(entry: DatasetEntry, form: EntryForm, actor: User) -> bool:
    conversation = form.conversation()
    if conversation is None:
        return False
    try:
        entry_update(entry=entry, messages=conversation[0], tools=conversation[1], actor=actor)
    except ValidationError as exc:
        for error in exc.messages:
            form.add_error(error)
        return False
    return True


@login_required
@require_POST
def dataset_snapshot_create(request: AuthenticatedRequest, slug: str, dataset_id: int) -> HttpResponse:
    _, dataset = dataset_or_404(request, slug, dataset_id, Role.EDITOR)
    snapshot = snapshot_request(dataset=dataset, created_by=request.user)
    if snapshot.status == JobStatus.SUCCEEDED:
        messages.success(request, f"Snapshot frozen: {snapshot.rows_total} rows, SHA-256 {snapshot.sha256[:12]}.")
    else:
        messages.success(request, f"Freezing {snapshot.rows_total} entries in the background: progress below.")
    return redirect("dataset", slug=slug, dataset_id=dataset_id)


@login_required
@require_safe
def dataset_snapshots_panel(request: AuthenticatedRequest, slug: str, dataset_id: int) -> HttpResponse:
    """The dataset's snapshots alone, polled by its page while one is being written."""
    membership, dataset = dataset_or_404(request, slug, dataset_id)
    context = {"project": membership.project, "dataset": dataset, **_snapshots(dataset)}
    return render(request, "curation/_dataset_snapshots.html", context)


@login_required
@require_safe
def dataset_imports_panel(request: AuthenticatedRequest, slug: str, dataset_id: int) -> HttpResponse:
    """The dataset's imports alone, polled by its page while one runs."""
    membership, dataset = dataset_or_404(request, slug, dataset_id)
    context = {"project": membership.project, "dataset": dataset, **_imports(dataset)}
    response = render(request, "curation/_dataset_imports.html", context)
    if request.headers.get("HX-Request") and not context["imports_running"]:
        # The page polled because an import was running: now that it is done, reload the page so the
        # list and the numbers show the new entries.
        response["HX-Refresh"] = "true"
    return response


@login_required
@require_POST
def dataset_import_upload(request: AuthenticatedRequest, slug: str, dataset_id: int) -> HttpResponse:
    membership, dataset = dataset_or_404(request, slug, dataset_id, Role.EDITOR)
    form = DatasetImportForm(request.POST, request.FILES)
    if form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            import_job_create(
                project=membership.project, file=upload, source_name=upload.name, created_by=request.user,
                dataset=dataset,
            )  # fmt: skip
        except PendingImportsTooLarge as exc:
            form.add_error("file", str(exc))
        else:
            messages.success(request, f"Importing {upload.name} into {dataset.name}: progress below.")
    if form.errors:
        messages.error(request, error_messages(form.errors))
    return redirect("dataset", slug=slug, dataset_id=dataset_id)


urlpatterns = [
    path("p/<slug:slug>/datasets/", dataset_list, name="datasets"),
    path("p/<slug:slug>/datasets/new", dataset_new, name="dataset-new"),
    path("p/<slug:slug>/datasets/<int:dataset_id>/", dataset_detail, name="dataset"),
    path("p/<slug:slug>/datasets/<int:dataset_id>/edit", dataset_edit, name="dataset-edit"),
    path("p/<slug:slug>/datasets/<int:dataset_id>/delete", dataset_delete_view, name="dataset-delete"),
    path("p/<slug:slug>/datasets/<int:dataset_id>/stats", dataset_stats_panel, name="dataset-stats"),
    path("p/<slug:slug>/datasets/<int:dataset_id>/validation", dataset_validation, name="dataset-validation"),
    path("p/<slug:slug>/datasets/<int:dataset_id>/split", dataset_split_view, name="dataset-split"),
    path("p/<slug:slug>/datasets/<int:dataset_id>/pairs", dataset_pairs_view, name="dataset-pairs"),
    path("p/<slug:slug>/datasets/<int:dataset_id>/entries/action", entries_action, name="dataset-entries-action"),
    path("p/<slug:slug>/datasets/<int:dataset_id>/entries/<int:entry_id>/", entry_detail, name="dataset-entry"),
    path("p/<slug:slug>/datasets/<int:dataset_id>/entries/<int:entry_id>/pick", entry_pick, name="dataset-entry-pick"),
    path("p/<slug:slug>/datasets/<int:dataset_id>/snapshots/", dataset_snapshots_panel, name="dataset-snapshots"),
    path(
        "p/<slug:slug>/datasets/<int:dataset_id>/snapshots/new", dataset_snapshot_create, name="dataset-snapshot-new"
    ),
    path("p/<slug:slug>/datasets/<int:dataset_id>/imports/", dataset_imports_panel, name="dataset-imports"),
    path(
        "p/<slug:slug>/datasets/<int:dataset_id>/imports/upload", dataset_import_upload, name="dataset-import-upload"
    ),
]
