"""The promotion gate in the API: the rule's fields and the verdicts stored with runs."""

from rest_framework import serializers

from curation.common.apis import StrictInput
from training.models import PromotionRule

RATE_HELP = "A fraction, 0 to 1; null: not checked."


def _rate(help_text: str) -> serializers.FloatField:
    return serializers.FloatField(min_value=0, max_value=1, allow_null=True, help_text=f"{help_text} {RATE_HELP}")


class PromotionRuleFields(serializers.Serializer):
    min_teacher_win_rate = _rate("The win rate against the logged answers (the teacher), at least.")
    min_teacher_win_rate_low = _rate("The lower bound of that win rate's 95% interval, at least.")
    min_base_win_rate = _rate("The win rate against the base model, at least.")
    max_retention_loss_increase = serializers.FloatField(
        min_value=-1, max_value=1, allow_null=True,
        help_text="How much worse the mean loss on the retention set may be than the base model's, as a fraction "
        "(0.02: 2% worse; negative: it must improve). Null: not checked.",
    )  # fmt: skip
    no_flagged_slices = serializers.BooleanField(
        help_text="No slice (a tag, a metadata value) on which the tuned model is worse than the base beyond the "
        "interval."
    )
    min_judged_examples = serializers.IntegerField(
        min_value=0, max_value=1_000_000, help_text="Examples the judge judged, at least; 0: not checked."
    )


# Every field, as GET answers them: one left out is a 400 naming it.
class PromotionRuleInput(StrictInput, PromotionRuleFields):
    pass


class PromotionRuleOutput(PromotionRuleFields):
    updated_at = serializers.DateTimeField(allow_null=True, help_text="Null: the defaults, never changed.")
    updated_by = serializers.SerializerMethodField(help_text="Who changed it last: a user's name, or an API key's.")

    def get_updated_by(self, rule: PromotionRule) -> str | None:
        return rule.updated_by_label if rule.updated_at is not None else None


class GateCheckOutput(serializers.Serializer):
    name = serializers.CharField(
        help_text="The condition: teacher_win_rate, teacher_win_rate_low, base_win_rate, retention_loss, slices, "
        "judged_examples; `rule` when the rule has none."
    )
    passed = serializers.BooleanField()
    reason = serializers.CharField(help_text="In words, with the numbers; what was not measured when it is missing.")


class GateVerdictOutput(serializers.Serializer):
    passed = serializers.BooleanField(help_text="Every condition of the rule holds.")
    checks = GateCheckOutput(many=True)
    rule = PromotionRuleFields(help_text="The rule it was reached under.")


class GateOutput(GateVerdictOutput):
    current = GateVerdictOutput(
        allow_null=True,
        help_text="The verdict under the project's rule now, when the rule changed since the run finished; else null.",
    )


class FineTuneGateOutput(GateOutput):
    evaluation = serializers.IntegerField(help_text="The evaluation run: the fine-tune's latest that succeeded.")
