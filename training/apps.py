from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "training"
    verbose_name = "Training"

    def ready(self) -> None:
        # Curation imports no other app: its dataset pages show fine-tuning, and its project page the promotion
        # rule, through these extensions.
        from curation.datasets.hooks import dataset_pages_extend
        from curation.projects.hooks import project_page_extend
        from curation.proxy.hooks import proxy_router_register
        from training.dataset_pages import DatasetFinetunes
        from training.evaluation.promotion.views import ProjectPromotionRule
        from training.serving.router import ServingRouter

        dataset_pages_extend(DatasetFinetunes())
        project_page_extend(ProjectPromotionRule())
        # The proxy sends calls to deployed fine-tunes through serving's router.
        proxy_router_register(ServingRouter())
