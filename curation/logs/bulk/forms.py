"""The explorer's bulk form: the action, the logs (selected ids or every match) and what the user confirmed."""

import typing

from django import forms
from django.core.exceptions import ValidationError
from django.http import QueryDict

from curation.common.params import whole_number
from curation.logs.links import filter_query
from curation.models import BulkAction, Dataset, Project
from curation.tags.services import tag_names_clean

MAX_SELECTED = 1_000


class LogIdsField(forms.Field):
    widget = forms.MultipleHiddenInput

    def to_python(self, value: object) -> list[int]:
        values: list = value if isinstance(value, list) else [value] if value else []
        numbers = [whole_number(str(v)) for v in values]
        if None in numbers:
            raise ValidationError("Log ids are whole numbers.")
        ids = list(dict.fromkeys(typing.cast(list[int], numbers)))
        if len(ids) > MAX_SELECTED:
            raise ValidationError(f"Select at most {MAX_SELECTED:,} logs; for more, act on all matching.")
        return ids


class BulkForm(forms.Form):
    action = forms.ChoiceField(choices=BulkAction.choices)
    scope = forms.ChoiceField(choices=[("selected", "selected logs"), ("matching", "all matching logs")])
    ids = LogIdsField(required=False)
    tags = forms.CharField(required=False, max_length=5000)
    dataset = forms.CharField(required=False)
    new_dataset = forms.CharField(required=False, max_length=200)
    filter = forms.CharField(required=False, max_length=10_000)
    expected = forms.IntegerField(required=False, min_value=0)
    next = forms.CharField(required=False, max_length=10_000)

    def __init__(self, data: QueryDict, *, project: Project) -> None:
        super().__init__(data)
        self.project = project

    def clean(self) -> dict:
        data = super().clean() or {}
        action, scope = data.get("action"), data.get("scope")
        if scope == "selected" and not data.get("ids"):
            self.add_error("ids", "Select logs first (tick their boxes or press x), or choose all matching.")
        data["filter"] = filter_query(QueryDict(data.get("filter") or ""))
        if action in (BulkAction.TAG_ADD, BulkAction.TAG_REMOVE):
            try:
                data["tag_list"] = tag_names_clean(data.get("tags") or "")
            except ValidationError as exc:
                self.add_error("tags", exc.message_dict["tags"])
        if action == BulkAction.DATASET_ADD:
            self._clean_dataset(data)
        return data

    def _clean_dataset(self, data: dict) -> None:
        new_name = (data.get("new_dataset") or "").strip()
        chosen = data.get("dataset") or ""
        if new_name and chosen in ("", "new"):
            if Dataset.objects.filter(project=self.project, name=new_name).exists():
                self.add_error("new_dataset", f"A dataset named '{new_name}' already exists: pick it in the list.")
            data["dataset_obj"], data["new_dataset"] = None, new_name
            return
        dataset_id = whole_number(chosen)
        dataset = None if dataset_id is None else Dataset.objects.filter(project=self.project, pk=dataset_id).first()
        if dataset is None:
            self.add_error("dataset", "Pick a dataset, or name a new one.")
        data["dataset_obj"], data["new_dataset"] = dataset, ""
