"""The Export section of a fine-tune's page: links to each runtime's archive (served by the API, as the adapter's
download is), and converting to GGUF, or how to make it possible."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect
from django.urls import path
from django.views.decorators.http import require_POST

from curation.common.views import AuthenticatedRequest
from curation.models import Role
from training.exports.selectors import SETTING, ExportFormat, export_refusal, gguf_converter_missing
from training.exports.services import finetune_gguf_request
from training.lookups import finetune_or_404
from training.models import FineTuneJob


def exports_context(job: FineTuneJob) -> dict:
    """What the Export section shows: each format with why it cannot be downloaded now ("" when it can)."""
    return {
        "exports": [
            {"format": fmt.value, "label": fmt.label, "refusal": export_refusal(job=job, fmt=fmt.value)}
            for fmt in ExportFormat
        ],
        "gguf_missing": gguf_converter_missing(),
        "gguf_setting": SETTING,
    }


@login_required
@require_POST
def finetune_gguf_view(request: AuthenticatedRequest, slug: str, job_id: int) -> HttpResponse:
    _, job = finetune_or_404(request, slug, job_id, Role.EDITOR)
    try:
        finetune_gguf_request(job=job, actor=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, "Conversion to GGUF queued for a GPU worker.")
    return redirect("finetune", slug=slug, job_id=job_id)


urlpatterns = [
    path("p/<slug:slug>/finetunes/<int:job_id>/gguf", finetune_gguf_view, name="finetune-gguf"),
]
