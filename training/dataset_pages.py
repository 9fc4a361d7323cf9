"""What a dataset's pages show of fine-tuning, given to curation through its extension point
(`curation.datasets.hooks`), registered when the app starts (`TrainingConfig.ready`): the fine-tune form and
the dataset's jobs, the entries in the order of a fine-tune's loss on them, and on the deletion page the
fine-tunes that a deletion keeps."""

from dataclasses import dataclass

from django.http import QueryDict

from curation.common.views import whole_number_param
from curation.datasets.selectors import EntryFilter, EntryPage
from curation.models import Dataset
from training import selectors
from training.forms import FineTuneForm


@dataclass(frozen=True)
class DatasetFinetunes:
    def entries_page(
        self, *, dataset: Dataset, params: QueryDict, entry_filter: EntryFilter, after: int
    ) -> tuple[EntryPage, dict] | None:
        """Highest loss first (`?loss_job=ID`, a fine-tune that recorded one per example); `after` counts the
        rows of the pages before."""
        job_id = whole_number_param(params, "loss_job")
        job = None if job_id is None else selectors.finetunes_with_losses(dataset=dataset).filter(pk=job_id).first()
        if job is None:
            return None
        page = selectors.entries_by_loss(dataset=dataset, job=job, entry_filter=entry_filter, offset=after)
        return page, {"loss_job": job}

    def detail_context(self, *, dataset: Dataset) -> dict:
        jobs = list(selectors.finetunes_for_dataset(dataset=dataset)[:10])
        return {
            "finetune_form": FineTuneForm(dataset=dataset),
            "finetunes": jobs,
            "finetunes_running": any(not job.is_finished for job in jobs),
            "loss_jobs": list(selectors.finetunes_with_losses(dataset=dataset)[:20]),
        }

    def delete_context(self, *, dataset: Dataset) -> dict:
        return {"finetunes": list(selectors.finetunes_for_dataset(dataset=dataset)[:50])}
