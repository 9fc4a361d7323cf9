from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "training"
    verbose_name = "Training"

    def ready(self) -> None:
        # Curation imports no other app: its dataset pages show fine-tuning through this extension.
        from curation.datasets.hooks import dataset_pages_extend
        from training.dataset_pages import DatasetFinetunes

        dataset_pages_extend(DatasetFinetunes())
