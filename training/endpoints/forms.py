"""The form an owner adds or changes a model endpoint with."""

from decimal import Decimal

from django import forms

from training.endpoints.services import MAX_CONCURRENCY, MAX_TIMEOUT_S, EndpointFields


class EndpointForm(forms.Form):
    name = forms.CharField(max_length=100)
    base_url = forms.CharField(
        max_length=500, label="Base URL", required=False,
        help_text="Up to /v1: https://api.openai.com/v1, http://vllm:8000/v1. Empty for a deployed fine-tune.",
    )  # fmt: skip
    model = forms.CharField(
        max_length=200, help_text="The model each call asks for; ft:<project>/<name> for a deployed fine-tune."
    )
    api_key = forms.CharField(
        required=False, label="API key", strip=True, widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted, never shown again. Leave empty for a server that takes none; on a change, "
        "empty keeps the key.",
    )  # fmt: skip
    remove_key = forms.BooleanField(required=False, label="Remove the key")
    max_concurrency = forms.IntegerField(min_value=1, max_value=MAX_CONCURRENCY, initial=8, label="Calls at once")
    timeout_s = forms.IntegerField(min_value=1, max_value=MAX_TIMEOUT_S, initial=120, label="Timeout (s)")
    input_price_per_mtok = forms.DecimalField(
        required=False, min_value=Decimal(0), max_digits=12, decimal_places=6, label="Prompt $/M tokens",
        help_text="Empty: the price table's, if it knows the model.",
    )  # fmt: skip
    output_price_per_mtok = forms.DecimalField(
        required=False, min_value=Decimal(0), max_digits=12, decimal_places=6, label="Completion $/M tokens"
    )

    def endpoint_fields(self) -> EndpointFields:
        data = self.cleaned_data
        return EndpointFields(**{name: data[name] for name in EndpointFields.__dataclass_fields__})

    def secret(self, *, changing: bool) -> str | None:
        """The key to store: None keeps the current one (a change with the field empty), "" removes it."""
        if self.cleaned_data.get("remove_key"):
            return ""
        key = self.cleaned_data.get("api_key") or ""
        return None if changing and not key else key
