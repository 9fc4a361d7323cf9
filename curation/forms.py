from django import forms
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.template.defaultfilters import filesizeformat

from curation.models import Role
from curation.services.proxy import upstream_url_problem
from curation.sniff import import_file_problem


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(max_length=100, required=False, help_text="What uses this key, e.g. 'prod backend'.")
    role = forms.ChoiceField(
        choices=[(Role.VIEWER, "Viewer: reads"), (Role.EDITOR, "Editor: sends logs, edits, exports, trains"),
                 (Role.OWNER, "Owner: also reads the audit log")],
        initial=Role.EDITOR,
        help_text="What the key may do in this project, as a member with that role could.",
    )  # fmt: skip


def validate_import_file(file: UploadedFile) -> None:
    """The API answers an oversized upload 413; on a page, the form names the limit. A file within it that is not
    JSONL (judged by its first bytes) is refused naming what it looks like."""
    limit, size = settings.LOGTUNE_MAX_IMPORT_BYTES, file.size or 0
    if size > limit:
        human = f" ({filesizeformat(limit)})" if limit >= 1024 else ""
        raise forms.ValidationError(f"The file is {size:,} bytes; the limit is {limit:,} bytes{human}.")
    problem = import_file_problem(file)
    if problem:
        raise forms.ValidationError(problem)


class ImportUploadForm(forms.Form):
    # An empty file is refused by FileField itself ("The submitted file is empty.").
    file = forms.FileField(help_text="JSONL or JSONL.gz, one log object per line.", validators=[validate_import_file])


class ProjectUpstreamsForm(forms.Form):
    """Where the logging proxy forwards the project's calls (docs/proxy.md). A plain form, not a ModelForm:
    validating one would write the new values onto the project before the service compares them for the audit."""

    openai_base_url = forms.URLField(
        label="OpenAI base URL", assume_scheme="https", widget=forms.URLInput(attrs={"size": 40}),
        help_text="Chat Completions go to this URL + /chat/completions.",
    )  # fmt: skip
    anthropic_base_url = forms.URLField(
        label="Anthropic base URL", assume_scheme="https", widget=forms.URLInput(attrs={"size": 40}),
        help_text="Messages go to this URL + /v1/messages.",
    )  # fmt: skip

    def clean_openai_base_url(self) -> str:
        return self._upstream("openai_base_url")

    def clean_anthropic_base_url(self) -> str:
        return self._upstream("anthropic_base_url")

    def _upstream(self, name: str) -> str:
        url = self.cleaned_data[name].strip().rstrip("/")
        problem = upstream_url_problem(url)
        if problem:
            raise forms.ValidationError(f"The URL {problem}.")
        return url


class ProjectUnreadableForm(forms.Form):
    keep_unreadable = forms.BooleanField(
        label="Keep logs no reader can read", required=False,
        help_text="Logs sent to the API or imported that no reader can turn into a conversation are stored with "
        "status Unreadable and the reason, instead of being refused, and can be read again after an upgrade "
        "(manage.py reparse_logs). The proxy always keeps them.",
    )  # fmt: skip


class ProjectPiiForm(forms.Form):
    redact_pii_on_ingest = forms.BooleanField(
        label="Redact personal data when logs arrive", required=False,
        help_text="E-mail addresses, phone numbers, cards, IBANs, public IP addresses and secrets are replaced by "
        "placeholders such as <EMAIL> before a log is stored, its original body included. "
        "Stored logs stay as they are.",
    )  # fmt: skip
