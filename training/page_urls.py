from django.urls import path

from training import views
from training.compare import views as compare_views
from training.endpoints import views as endpoint_views
from training.evaluation import views as evaluation_views
from training.evaluation import vote_views
from training.evaluation.promotion import views as promotion_views
from training.exports import views as export_views
from training.generation import views as generation_views
from training.serving.deployments import views as deployment_views
from training.serving.routes import views as route_views

urlpatterns = [
    path("p/<slug:slug>/finetunes/", views.finetune_list, name="finetunes"),
    path("p/<slug:slug>/finetunes/<int:job_id>/", views.finetune_detail, name="finetune"),
    path("p/<slug:slug>/finetunes/<int:job_id>/status", views.finetune_status_panel, name="finetune-status"),
    path("p/<slug:slug>/finetunes/<int:job_id>/cancel", views.finetune_cancel_view, name="finetune-cancel"),
    path("p/<slug:slug>/finetunes/<int:job_id>/merge", views.finetune_merge_view, name="finetune-merge"),
    path("p/<slug:slug>/finetunes/<int:job_id>/delete", views.finetune_delete_view, name="finetune-delete"),
    path(
        "p/<slug:slug>/finetunes/<int:job_id>/weights/delete",
        views.finetune_weights_delete_view,
        name="finetune-weights-delete",
    ),
    path("p/<slug:slug>/finetunes/<int:job_id>/playground", views.playground_ask, name="finetune-playground"),
    path(
        "p/<slug:slug>/finetunes/<int:job_id>/generations/<int:generation_id>",
        views.generation_panel,
        name="finetune-generation",
    ),
    path("p/<slug:slug>/datasets/<int:dataset_id>/finetune/", views.finetune_new, name="dataset-finetune"),
    path(
        "p/<slug:slug>/datasets/<int:dataset_id>/finetune/estimate",
        views.finetune_estimate_panel,
        name="dataset-finetune-estimate",
    ),
    path(
        "p/<slug:slug>/datasets/<int:dataset_id>/finetunes/", views.dataset_finetunes_panel, name="dataset-finetunes"
    ),
    path(
        "p/<slug:slug>/datasets/<int:dataset_id>/entries/<int:entry_id>/loss-preview",
        views.entry_loss_preview,
        name="dataset-entry-loss-preview",
    ),
    path(
        "p/<slug:slug>/datasets/<int:dataset_id>/entries/<int:entry_id>/loss-preview/<int:preview_id>",
        views.loss_preview_panel,
        name="dataset-entry-loss-preview-panel",
    ),
    *compare_views.urlpatterns,
    *endpoint_views.urlpatterns,
    *evaluation_views.urlpatterns,
    *generation_views.urlpatterns,
    *vote_views.urlpatterns,
    *promotion_views.urlpatterns,
    *export_views.urlpatterns,
    *deployment_views.urlpatterns,
    *route_views.urlpatterns,
]
