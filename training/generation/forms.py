"""The form that starts a generation job: each kind's fields, read into a GenerationRequest."""

from django import forms
from django.http import QueryDict

from curation.models import Dataset, DatasetKind, Project
from training.generation import prompts
from training.generation.services import (
    MAX_CHUNKS_PER_CALL,
    MAX_COMBINATIONS,
    MAX_ROWS_PER_CALL,
    MAX_SEEDS,
    MAX_TOKENS,
    GenerationRequest,
)
from training.models import GenerationKind, ModelEndpoint, SourceDocument

DEFAULTS = GenerationRequest(kind="documents", endpoint_id=0, dataset_id=0)


class GenerationForm(forms.Form):
    kind = forms.ChoiceField(choices=GenerationKind.choices, widget=forms.RadioSelect)
    endpoint = forms.ModelChoiceField(queryset=ModelEndpoint.objects.none(), help_text="The model that writes.")
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.none(), help_text="Accepted rows join it.")
    documents = forms.ModelMultipleChoiceField(
        queryset=SourceDocument.objects.none(), required=False, widget=forms.CheckboxSelectMultiple
    )
    rows_per_call = forms.IntegerField(
        min_value=1, max_value=MAX_ROWS_PER_CALL, initial=DEFAULTS.rows_per_call, label="Rows per call",
        help_text="Pairs per chunk; variations per seed and style.",
    )  # fmt: skip
    chunks_per_call = forms.IntegerField(
        min_value=1, max_value=MAX_CHUNKS_PER_CALL, initial=1,
        help_text="2 or more: questions that need several chunks together.",
    )  # fmt: skip
    max_combinations = forms.IntegerField(min_value=1, max_value=MAX_COMBINATIONS, initial=DEFAULTS.max_combinations,
                                          help_text="The cap on groups of chunks.")  # fmt: skip
    chunk_chars = forms.IntegerField(
        min_value=500, max_value=20000, initial=DEFAULTS.chunk_chars, label="Chunk size",
        help_text="Characters a chunk holds at most.",
    )  # fmt: skip
    overlap_chars = forms.IntegerField(
        min_value=0, max_value=10000, initial=DEFAULTS.overlap_chars, label="Overlap",
        help_text="Characters a chunk repeats of the one before.",
    )  # fmt: skip
    prompt_template = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 10}), strip=False)
    system_prompt = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}), strip=False,
                                    help_text="A system message every row starts with (documents).")  # fmt: skip
    seed_dataset = forms.ModelChoiceField(queryset=Dataset.objects.none(), required=False,
                                          help_text="Seeds: the entries of a dataset…")  # fmt: skip
    seed_query = forms.CharField(required=False, max_length=2000, label="or logs matching",
                                 help_text="an explorer filter, as its query string: q=refund&tag=prod")  # fmt: skip
    max_seeds = forms.IntegerField(min_value=1, max_value=MAX_SEEDS, initial=DEFAULTS.max_seeds)
    styles = forms.CharField(required=False, initial="paraphrase", max_length=500,
                             help_text="paraphrase, harder, language:French — separated by commas.")  # fmt: skip
    max_tokens = forms.IntegerField(min_value=1, max_value=MAX_TOKENS, initial=DEFAULTS.max_tokens)
    temperature = forms.FloatField(min_value=0, max_value=2, initial=DEFAULTS.temperature)
    seed = forms.IntegerField(initial=0, min_value=-(2**31), max_value=2**31 - 1)
    dedup_threshold = forms.FloatField(min_value=0.5, max_value=1, initial=DEFAULTS.dedup_threshold,
                                       help_text="Cosine similarity at which a row is a near-duplicate.")  # fmt: skip
    min_answer_chars = forms.IntegerField(min_value=0, max_value=10000, initial=DEFAULTS.min_answer_chars)
    drop_personal_data = forms.BooleanField(required=False, initial=True)
    judge = forms.ModelChoiceField(queryset=ModelEndpoint.objects.none(), required=False,
                                   help_text="Optional: scores each row from 1 to 10.")  # fmt: skip
    judge_threshold = forms.FloatField(min_value=1, max_value=10, initial=DEFAULTS.judge_threshold)
    judge_rubric = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))

    def __init__(self, *args: object, project: Project, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        endpoints = ModelEndpoint.objects.filter(project=project)
        datasets = Dataset.objects.filter(project=project)
        self.fields["endpoint"].queryset = endpoints  # type: ignore[attr-defined]
        self.fields["judge"].queryset = endpoints  # type: ignore[attr-defined]
        self.fields["dataset"].queryset = datasets.filter(kind=DatasetKind.CHAT)  # type: ignore[attr-defined]
        self.fields["seed_dataset"].queryset = datasets  # type: ignore[attr-defined]
        documents = self.fields["documents"]
        documents.queryset = SourceDocument.objects.filter(project=project, error="")  # type: ignore[attr-defined]
        documents.label_from_instance = lambda d: f"{d.name} ({d.chunks} chunk{'s' * (d.chunks != 1)})"  # type: ignore[attr-defined]
        self.initial.setdefault("kind", "documents")
        if not self.is_bound and not self.initial.get("prompt_template"):
            kind = self.initial.get("kind", "documents")
            self.initial["prompt_template"] = prompts.DEFAULT_TEMPLATES.get(kind, "")

    def generation_request(self) -> GenerationRequest:
        data = self.cleaned_data
        seed_dataset, query = data.get("seed_dataset"), (data.get("seed_query") or "").lstrip("?")
        filter_params = {k: v for k, v in QueryDict(query).items() if v} if query else {}
        template = data.get("prompt_template") or ""
        if template.strip() in {text.strip() for text in prompts.DEFAULT_TEMPLATES.values()}:
            template = ""  # a kind's default, left as it was: the chosen kind's own default is used
        return GenerationRequest(
            kind=data["kind"], endpoint_id=data["endpoint"].pk, dataset_id=data["dataset"].pk,
            document_ids=[d.pk for d in data.get("documents") or []], rows_per_call=data["rows_per_call"],
            chunks_per_call=data["chunks_per_call"], max_combinations=data["max_combinations"],
            chunk_chars=data["chunk_chars"], overlap_chars=data["overlap_chars"],
            prompt_template=template, system_prompt=data.get("system_prompt") or "",
            seed_dataset_id=seed_dataset.pk if seed_dataset else None, seed_filter=filter_params,
            max_seeds=data["max_seeds"],
            styles=[s.strip() for s in (data.get("styles") or "").split(",") if s.strip()],
            max_tokens=data["max_tokens"], temperature=data["temperature"], seed=data["seed"],
            dedup_threshold=data["dedup_threshold"], min_answer_chars=data["min_answer_chars"],
            drop_personal_data=bool(data.get("drop_personal_data")),
            judge_endpoint_id=data["judge"].pk if data.get("judge") else None,
            judge_threshold=data["judge_threshold"], judge_rubric=data.get("judge_rubric") or "",
        )  # fmt: skip


# The form's fields for each field of the request that may be refused, so a refusal shows beside its field.
REQUEST_TO_FORM = {
    "endpoint_id": "endpoint", "dataset_id": "dataset", "document_ids": "documents", "seed_dataset_id": "seed_dataset",
    "seed_filter": "seed_query", "judge_endpoint_id": "judge",
}  # fmt: skip
