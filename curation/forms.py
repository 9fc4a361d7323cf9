from django import forms

from curation.models import Role


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(max_length=100, required=False, help_text="What uses this key, e.g. 'prod backend'.")
    role = forms.ChoiceField(
        choices=[(Role.VIEWER, "Viewer: reads"), (Role.EDITOR, "Editor: sends logs, edits, exports, trains"),
                 (Role.OWNER, "Owner: also reads the audit log")],
        initial=Role.EDITOR,
        help_text="What the key may do in this project, as a member with that role could.",
    )  # fmt: skip


class ImportUploadForm(forms.Form):
    file = forms.FileField(help_text="JSONL or JSONL.gz, one log object per line.")
