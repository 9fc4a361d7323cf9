"""The fine-tune page's form to deploy it."""

from django import forms


class DeployForm(forms.Form):
    name = forms.SlugField(
        max_length=64, required=False, help_text="Served as ft:<project>/<name>; empty: ft-<fine-tune id>."
    )
    force = forms.BooleanField(required=False)  # "Deploy anyway": past a failed or missing verdict (owners)
    reason = forms.CharField(
        max_length=2000, required=False, widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Why it is deployed past the promotion gate.",
    )  # fmt: skip
