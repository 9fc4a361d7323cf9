"""The promotion rule on the project's page: every member reads it, owners change it there."""

from dataclasses import dataclass

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from curation.common.views import AuthenticatedRequest, form_problems, membership_or_404
from curation.models import Membership, Role
from training.evaluation.gate import rule_conditions
from training.evaluation.promotion.forms import PromotionRuleForm
from training.evaluation.promotion.selectors import promotion_rule_get
from training.evaluation.promotion.services import promotion_rule_update


@dataclass(frozen=True)
class ProjectPromotionRule:
    """The project page's part (curation.projects.hooks): the rule in words, and its form for owners."""

    def settings_context(self, *, membership: Membership) -> dict:
        rule = promotion_rule_get(project=membership.project)
        context = {"promotion_rule": rule, "promotion_conditions": rule_conditions(rule.gate_rule)}
        if membership.role == Role.OWNER:
            context["promotion_form"] = PromotionRuleForm.for_rule(rule.gate_rule)
        return context


@login_required
@require_POST
def promotion_rule_save(request: AuthenticatedRequest, slug: str) -> HttpResponse:
    membership = membership_or_404(request, slug, Role.OWNER)
    form = PromotionRuleForm(request.POST)
    if form.is_valid():
        promotion_rule_update(project=membership.project, rule=form.rule(), actor=request.user)
        messages.success(request, "Promotion rule saved: evaluations that finish from now on are judged by it.")
    else:
        messages.error(request, form_problems(form.errors))
    return redirect(reverse("project", args=[slug]) + "#promotion-rule")


urlpatterns = [
    path("p/<slug:slug>/promotion-rule", promotion_rule_save, name="project-promotion-rule"),
]
