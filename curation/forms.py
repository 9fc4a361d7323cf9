from django import forms
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.template.defaultfilters import filesizeformat

from curation.models import Role


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(max_length=100, required=False, help_text="What uses this key, e.g. 'prod backend'.")
    role = forms.ChoiceField(
        choices=[(Role.VIEWER, "Viewer: reads"), (Role.EDITOR, "Editor: sends logs, edits, exports, trains"),
                 (Role.OWNER, "Owner: also reads the audit log")],
        initial=Role.EDITOR,
        help_text="What the key may do in this project, as a member with that role could.",
    )  # fmt: skip


def validate_import_size(file: UploadedFile) -> None:
    """The API answers an oversized upload 413; on a page, the form names the limit."""
    limit, size = settings.LOGTUNE_MAX_IMPORT_BYTES, file.size or 0
    if size > limit:
        human = f" ({filesizeformat(limit)})" if limit >= 1024 else ""
        raise forms.ValidationError(f"The file is {size:,} bytes; the limit is {limit:,} bytes{human}.")


class ImportUploadForm(forms.Form):
    # An empty file is refused by FileField itself ("The submitted file is empty.").
    file = forms.FileField(help_text="JSONL or JSONL.gz, one log object per line.", validators=[validate_import_size])
