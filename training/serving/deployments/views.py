"""Deploying from the fine-tune's page (its Deploy section), and stopping a deployment."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_POST, require_safe

from curation.common.views import AuthenticatedRequest, can_edit, form_problems, membership_or_404, validation_errors
from curation.models import Membership, Role
from training.evaluation.promotion.selectors import finetune_gate, promotion_rule_get
from training.lookups import finetune_or_404
from training.models import FineTuneJob
from training.serving.deployments.forms import DeployForm
from training.serving.deployments.selectors import deployment_current_of_job, deployment_get
from training.serving.services import deployment_create, deployment_stop


def deploy_context(request: AuthenticatedRequest, job: FineTuneJob, membership: Membership) -> dict:
    """The Deploy section of the fine-tune's page: the gate's verdict, the live deployment, the form, and where the
    proxy answers (for the snippet)."""
    chat = request.build_absolute_uri(reverse("proxy-openai-chat"))
    gate = finetune_gate(job=job, rule=promotion_rule_get(project=membership.project).gate_rule)
    verdict = (gate.get("current") or gate) if gate else None
    return {
        "deploy_gate": gate,
        "deploy_verdict": verdict,
        "deployment": deployment_current_of_job(project=membership.project, job_id=job.pk),
        "deploy_form": DeployForm(initial={"name": f"ft-{job.pk}"}),
        "can_deploy": can_edit(membership) and job.has_weights,
        "can_force": membership.role == Role.OWNER,
        "proxy_base_url": chat.removesuffix("/chat/completions"),
    }


@login_required
@require_safe
def deployment_panel(request: AuthenticatedRequest, slug: str, job_id: int) -> HttpResponse:
    """The Deploy section alone, polled while the deployment waits for a model server or loads."""
    membership, job = finetune_or_404(request, slug, job_id)
    context = {"project": membership.project, "job": job, "can_edit": can_edit(membership),
               **deploy_context(request, job, membership)}  # fmt: skip
    return render(request, "training/_deploy.html", context)


@login_required
@require_POST
def finetune_deploy(request: AuthenticatedRequest, slug: str, job_id: int) -> HttpResponse:
    membership, job = finetune_or_404(request, slug, job_id, Role.EDITOR)
    form = DeployForm(request.POST)
    back = redirect(reverse("finetune", args=[slug, job.pk]) + "#deploy")
    if not form.is_valid():
        messages.error(request, form_problems(form.errors))
        return back
    force = form.cleaned_data["force"]
    if force and membership.role != Role.OWNER:
        raise PermissionDenied("Deploying past the promotion gate is an owner's decision.")
    try:
        deployment = deployment_create(
            job=job, name=form.cleaned_data["name"], force=force, reason=form.cleaned_data["reason"],
            actor=request.user,
        )  # fmt: skip
    except ValidationError as exc:
        messages.error(request, validation_errors(exc))
    else:
        messages.success(request, f"Deployed as {deployment.served_name}: a model server loads it shortly.")
    return back


@login_required
@require_POST
def deployment_stop_view(request: AuthenticatedRequest, slug: str, deployment_id: int) -> HttpResponse:
    membership = membership_or_404(request, slug, Role.EDITOR)
    deployment = deployment_get(project=membership.project, deployment_id=deployment_id)
    if deployment is None:
        raise Http404("Deployment not found")
    try:
        deployment_stop(deployment=deployment, actor=request.user)
    except ValidationError as exc:
        messages.error(request, validation_errors(exc))
    else:
        messages.success(request, f"{deployment.served_name} stopped: its model server unloads it.")
    if request.POST.get("from") == "finetune":
        return redirect(reverse("finetune", args=[slug, deployment.job_id]) + "#deploy")
    return redirect("serving", slug=slug)


urlpatterns = [
    path("p/<slug:slug>/finetunes/<int:job_id>/deploy", finetune_deploy, name="finetune-deploy"),
    path("p/<slug:slug>/finetunes/<int:job_id>/deployment", deployment_panel, name="finetune-deployment"),
    path("p/<slug:slug>/deployments/<int:deployment_id>/stop", deployment_stop_view, name="deployment-stop"),
]
