"""Forms of a project's settings: API keys, upstream providers of the proxy, personal data, unreadable logs."""

from django import forms

from curation.models import Role
from curation.proxy.upstreams import upstream_url_problem


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(max_length=100, required=False, help_text="What uses this key, e.g. 'prod backend'.")
    role = forms.ChoiceField(
        choices=[(Role.VIEWER, "Viewer: reads"), (Role.EDITOR, "Editor: sends logs, edits, exports, trains"),
                 (Role.OWNER, "Owner: also reads the audit log")],
        initial=Role.EDITOR,
        help_text="What the key may do in this project, as a member with that role could.",
    )  # fmt: skip


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
