"""Forms of the explorer: saving a filter as a named view."""

from django import forms


class SavedViewForm(forms.Form):
    name = forms.CharField(max_length=100)
    query = forms.CharField(required=False, max_length=10_000)
