"""The promotion rule's form on the project page: rates and the retention loss in percent, empty for a condition
not checked. A plain form, not a ModelForm: validating one would write the new values onto the row before the
service compares them for the audit."""

from decimal import Decimal

from django import forms

from training.evaluation.gate import GateRule

PERCENTS = ("min_teacher_win_rate", "min_teacher_win_rate_low", "min_base_win_rate", "max_retention_loss_increase")


def _percent(label: str, *, low: int = 0, help_text: str = "") -> forms.DecimalField:
    return forms.DecimalField(
        label=label, required=False, min_value=low, max_value=100, max_digits=7, decimal_places=4,
        help_text=help_text or "Empty: not checked.", widget=forms.NumberInput(attrs={"step": "any", "size": 6}),
    )  # fmt: skip


class PromotionRuleForm(forms.Form):
    min_teacher_win_rate = _percent("Win rate against the teacher at least (%)")
    min_teacher_win_rate_low = _percent("Its interval's lower bound at least (%)")
    min_base_win_rate = _percent("Win rate against the base model at least (%)")
    max_retention_loss_increase = _percent(
        "Retention loss at most this much worse (%)", low=-100,
        help_text="Than the base model's, on the retention set; negative: it must improve. Empty: not checked.",
    )  # fmt: skip
    no_flagged_slices = forms.BooleanField(
        label="No slice worse than the base model", required=False,
        help_text="On no tag or metadata value is the fine-tuned model worse than the base beyond the interval.",
    )  # fmt: skip
    min_judged_examples = forms.IntegerField(
        label="Judged examples at least", min_value=0, max_value=1_000_000, help_text="0: not checked."
    )

    @classmethod
    def for_rule(cls, rule: GateRule) -> "PromotionRuleForm":
        initial: dict[str, object] = rule.as_dict()
        for name in PERCENTS:
            value = initial[name]
            initial[name] = None if value is None else Decimal(format((Decimal(repr(value)) * 100).normalize(), "f"))
        return cls(initial=initial)

    def rule(self) -> GateRule:
        """The rule the valid form says, rates as fractions."""
        values = dict(self.cleaned_data)
        for name in PERCENTS:
            values[name] = None if values[name] is None else float(values[name] / 100)
        return GateRule(**values)
