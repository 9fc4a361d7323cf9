from django import forms


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(max_length=100, required=False, help_text="What uses this key, e.g. 'prod backend'.")


class ImportUploadForm(forms.Form):
    file = forms.FileField(help_text="JSONL or JSONL.gz, one log object per line.")
