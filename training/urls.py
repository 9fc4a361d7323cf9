from django.urls import path

from training import apis

urlpatterns = [
    path("finetunes", apis.FineTunesApi.as_view(), name="api-finetunes"),
    path("finetunes/estimate", apis.FineTuneEstimateApi.as_view(), name="api-finetune-estimate"),
    path("finetunes/<int:job_id>", apis.FineTuneDetailApi.as_view(), name="api-finetune"),
    path("finetunes/<int:job_id>/metrics", apis.FineTuneMetricsApi.as_view(), name="api-finetune-metrics"),
    path("finetunes/<int:job_id>/cancel", apis.FineTuneCancelApi.as_view(), name="api-finetune-cancel"),
    path("finetunes/<int:job_id>/adapter", apis.FineTuneAdapterApi.as_view(), name="api-finetune-adapter"),
    path("finetunes/<int:job_id>/merge", apis.FineTuneMergeApi.as_view(), name="api-finetune-merge"),
    path("finetunes/<int:job_id>/merged", apis.FineTuneMergedApi.as_view(), name="api-finetune-merged"),
    path("finetunes/<int:job_id>/weights", apis.FineTuneWeightsApi.as_view(), name="api-finetune-weights"),
    path("finetunes/<int:job_id>/losses", apis.FineTuneLossesApi.as_view(), name="api-finetune-losses"),
    path("finetunes/<int:job_id>/generate", apis.FineTuneGenerateApi.as_view(), name="api-finetune-generate"),
    path(
        "finetunes/<int:job_id>/generations/<int:generation_id>",
        apis.GenerationDetailApi.as_view(),
        name="api-finetune-generation",
    ),
    path("base-models", apis.BaseModelsApi.as_view(), name="api-base-models"),
]
