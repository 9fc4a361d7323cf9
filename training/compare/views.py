"""The compare page: two to six fine-tunes of a project side by side (viewers may see it)."""

from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.urls import path
from django.views.decorators.http import require_safe

from curation.common.views import AuthenticatedRequest, membership_or_404, validation_errors
from training.compare.selectors import (
    MAX_JOBS,
    Comparison,
    compare_ids,
    comparison_curves,
    comparison_get,
    shared_examples,
)
from training.views import finetune_row

EXAMPLES_PAGE_SIZE = 20
VERDICTS = {1.0: "win", 0.5: "tie", 0.0: "loss"}  # against the logged answer, as the judge gave it


@login_required
@require_safe
def finetune_compare(request: AuthenticatedRequest, slug: str) -> HttpResponse:
    membership = membership_or_404(request, slug)
    context: dict = {"project": membership.project, "max_jobs": MAX_JOBS}
    try:
        ids = compare_ids(request.GET.getlist("ids"))
    except ValidationError as exc:
        context["problem"] = validation_errors(exc)
        return render(request, "training/finetune_compare.html", context, status=400)
    comparison = comparison_get(project=membership.project, ids=ids)
    if comparison is None:
        raise Http404("Fine-tune not found")
    query = {"ids": ",".join(map(str, ids))}
    context |= {
        "ids": query["ids"],
        "jobs": [finetune_row(job, comparison.runs.get(job.pk)) for job in comparison.jobs],
        "curves": comparison_curves(comparison),
        "metrics": _metric_rows(comparison),
        "settings": comparison.settings,
        **_examples(comparison, request.GET.get("page"), query),
    }
    return render(request, "training/finetune_compare.html", context)


def _metric_rows(comparison: Comparison) -> list[dict]:
    return [{"label": row.label, "source": row.source, "cells": list(zip(row.tuned, row.base, strict=True))}
            for row in comparison.metrics]  # fmt: skip


def _examples(comparison: Comparison, page_number: str | None, query: dict[str, str]) -> dict:
    shared = shared_examples(comparison)
    page = Paginator(shared.rows, EXAMPLES_PAGE_SIZE).get_page(page_number)
    rows = [
        {**row, "answers": [{**answer, "verdict": _verdict(answer["verdict"])} for answer in row["answers"]]}
        for row in page.object_list
    ]

    def link(number: int) -> str:
        return f"?{urlencode(query | {'page': str(number)})}#examples"

    return {
        "example_jobs": shared.jobs,
        "without_run": shared.without_run,
        "examples": rows,
        "examples_page": page,
        "examples_total": len(shared.rows),
        "previous_url": link(page.previous_page_number()) if page.has_previous() else "",
        "next_url": link(page.next_page_number()) if page.has_next() else "",
    }


def _verdict(outcome: object) -> str | None:
    return VERDICTS.get(outcome) if isinstance(outcome, int | float) else None


urlpatterns = [
    path("p/<slug:slug>/finetunes/compare", finetune_compare, name="finetunes-compare"),
]
