"""The Serving page's form to add a route, and the route page's promotion to a share of one's choosing. Shares are
asked for as percentages."""

from django import forms

from curation.models import Project
from training.models import LIVE_DEPLOYMENT, Deployment, ModelEndpoint, RouteMode
from training.serving.routes.services import MAX_POSITION, MAX_TIMEOUT_MS, MIN_TIMEOUT_MS, RouteFields


def _percent(label: str, **kwargs: object) -> forms.FloatField:
    return forms.FloatField(min_value=0, max_value=100, label=label, **kwargs)  # type: ignore[arg-type]


class RouteForm(forms.Form):
    name = forms.SlugField(max_length=64, help_text="Lowercase letters, digits, dashes: checkout-canary.")
    deployment = forms.ModelChoiceField(queryset=Deployment.objects.none(), empty_label=None)
    mode = forms.ChoiceField(choices=RouteMode.choices, initial=RouteMode.SHADOW)
    match_model = forms.CharField(max_length=200, required=False, label="Model", help_text="The request's `model`.")
    match_route = forms.CharField(max_length=100, required=False, label="Route header",
                                  help_text="The X-Logtune-Route header's value.")  # fmt: skip
    match_metadata_key = forms.CharField(max_length=100, required=False, label="Metadata key")
    match_metadata_value = forms.CharField(max_length=200, required=False, label="Metadata value",
                                           help_text="Empty: the key is present.")  # fmt: skip
    share = _percent("Share %", required=False,
                     help_text="Of the matching calls. Empty: 100% shadowed, or 1% for a canary.")  # fmt: skip
    timeout_ms = forms.IntegerField(min_value=MIN_TIMEOUT_MS, max_value=MAX_TIMEOUT_MS, initial=10_000,
                                    label="Timeout (ms)", help_text="Canary: the fine-tune's first byte.")  # fmt: skip
    check_json = forms.BooleanField(required=False, initial=True, label="Check JSON answers (response_format)")
    check_tools = forms.BooleanField(required=False, initial=True, label="Check tool calls")
    judge = forms.ModelChoiceField(queryset=ModelEndpoint.objects.none(), required=False,
                                   help_text="Judges a sample of the shadow pairs.")  # fmt: skip
    judge_sample = _percent("Judged %", initial=10)
    position = forms.IntegerField(min_value=0, max_value=MAX_POSITION, initial=0,
                                  help_text="The first active matching route, by position, takes a call.")  # fmt: skip

    def __init__(self, *args: object, project: Project, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["deployment"].queryset = Deployment.objects.filter(  # type: ignore[attr-defined]
            project=project, status__in=LIVE_DEPLOYMENT
        )
        self.fields["judge"].queryset = ModelEndpoint.objects.filter(project=project)  # type: ignore[attr-defined]

    def route_fields(self) -> RouteFields:
        data = self.cleaned_data
        share = data["share"]
        return RouteFields(
            match_model=data["match_model"], match_route=data["match_route"],
            match_metadata_key=data["match_metadata_key"], match_metadata_value=data["match_metadata_value"],
            share=None if share is None else share / 100, timeout_ms=data["timeout_ms"],
            check_json=data["check_json"], check_tools=data["check_tools"], judge=data["judge"],
            judge_sample=data["judge_sample"] / 100, position=data["position"],
        )  # fmt: skip


class PromoteForm(forms.Form):
    share = _percent("Share %", required=False, help_text="Empty: the next step.")
