"""What another app adds to a dataset's pages, registered by that app when it starts (training's
`AppConfig.ready`). Curation is the base the other apps build on and imports none of them: the dataset page
asks its extensions for their part instead. Each part is template context; the page's template includes the
extension's partials where that context is present."""

from typing import Protocol

from django.http import QueryDict

from curation.datasets.selectors import EntryFilter, EntryPage
from curation.models import Dataset


class DatasetPagesExtension(Protocol):
    def entries_page(
        self, *, dataset: Dataset, params: QueryDict, entry_filter: EntryFilter, after: int
    ) -> tuple[EntryPage, dict] | None:
        """The dataset page's entries in another order the query string asks for (and its context), or None."""
        ...

    def detail_context(self, *, dataset: Dataset) -> dict:
        """What the dataset page shows of this extension."""
        ...

    def delete_context(self, *, dataset: Dataset) -> dict:
        """What the confirmation of a dataset's deletion shows of this extension."""
        ...


_extensions: list[DatasetPagesExtension] = []


def dataset_pages_extend(extension: DatasetPagesExtension) -> None:
    """Add `extension` to every dataset page (once; a second registration of an equal one is ignored)."""
    if extension not in _extensions:
        _extensions.append(extension)


def dataset_pages_extensions() -> tuple[DatasetPagesExtension, ...]:
    return tuple(_extensions)
