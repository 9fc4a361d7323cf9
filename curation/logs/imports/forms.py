"""The upload form of a JSONL file of logs, judged by its first bytes before a job is made."""

from django import forms
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.template.defaultfilters import filesizeformat

from curation.logs.imports.sniff import import_file_problem
from curation.logs.ingest.envelope import FORMATS


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


FORMAT_CHOICES = [("", "Recognise each line's shape"), *((name, label) for name, label in FORMATS.items())]
BATCH_INPUT_HELP = (
    "Only with an OpenAI Batch API output file: its input file, so that each answer is imported with its request "
    "(joined by custom_id)."
)


class ImportUploadForm(forms.Form):
    # An empty file is refused by FileField itself ("The submitted file is empty.").
    file = forms.FileField(help_text="JSONL or JSONL.gz, one log object per line.", validators=[validate_import_file])
    format = forms.ChoiceField(
        required=False, choices=FORMAT_CHOICES, help_text="Read every line as this shape; by default each line's "
        "shape is recognised.",
    )  # fmt: skip
    batch_input = forms.FileField(
        required=False, label="Batch input file", help_text=BATCH_INPUT_HELP, validators=[validate_import_file]
    )
