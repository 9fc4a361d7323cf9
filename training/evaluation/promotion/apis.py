"""REST API of the project's promotion rule: members read it, owners set it."""

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from curation.common.apis import ProjectScopedApi, request_actor
from curation.common.permissions import project_for_request
from curation.models import Role
from training.evaluation.gate import GateRule
from training.evaluation.promotion.selectors import promotion_rule_get
from training.evaluation.promotion.serializers import PromotionRuleInput, PromotionRuleOutput
from training.evaluation.promotion.services import promotion_rule_update


class PromotionRuleApi(ProjectScopedApi):
    @extend_schema(
        operation_id="promotion_rule_retrieve", summary="The project's promotion rule", responses=PromotionRuleOutput,
        description="What an evaluation must show for its fine-tune to pass the gate; the defaults until an owner "
        "sets it.",
    )  # fmt: skip
    def get(self, request: Request) -> Response:
        return Response(PromotionRuleOutput(promotion_rule_get(project=project_for_request(request))).data)

    @extend_schema(
        operation_id="promotion_rule_update", summary="Set the project's promotion rule (owners)",
        request=PromotionRuleInput, responses=PromotionRuleOutput,
        description="Every field, null for a condition not checked. Runs that finish from now on are judged by it; "
        "the verdicts stored with earlier runs stay, and their answers add the verdict under this rule as `current`. "
        "Audited as `promotion_rule.update`.",
    )  # fmt: skip
    def put(self, request: Request) -> Response:
        project = project_for_request(request, role=Role.OWNER)
        data = PromotionRuleInput(data=request.data)
        data.is_valid(raise_exception=True)
        rule = promotion_rule_update(project=project, rule=GateRule(**data.validated_data), **request_actor(request))
        return Response(PromotionRuleOutput(rule).data)
