from django.urls import path

from training.compare.apis import FineTunesCompareApi
from training.endpoints.apis import EndpointCheckApi, EndpointDetailApi, EndpointsApi
from training.evaluation.apis import (
    EvaluationCancelApi,
    EvaluationDetailApi,
    EvaluationEstimateApi,
    EvaluationPairsApi,
    EvaluationsApi,
    EvaluationVotesApi,
    RegressionSetDetailApi,
    RegressionSetsApi,
)
from training.evaluation.promotion.apis import PromotionRuleApi
from training.exports.apis import FineTuneExportApi, FineTuneGgufApi
from training.finetunes.apis import (
    BaseModelsApi,
    FineTuneAdapterApi,
    FineTuneCancelApi,
    FineTuneDetailApi,
    FineTuneEstimateApi,
    FineTuneLossesApi,
    FineTuneMergedApi,
    FineTuneMetricsApi,
    FineTunesApi,
    FineTuneWeightsApi,
)
from training.generation import apis as generation_apis
from training.playground.apis import FineTuneGenerateApi, FineTuneMergeApi, GenerationDetailApi
from training.serving.deployments.apis import DeploymentDetailApi, DeploymentsApi, DeploymentStopApi
from training.serving.routes.apis import (
    RouteDetailApi,
    RoutePromoteApi,
    RouteRollbackApi,
    RoutesApi,
    RouteStatsApi,
)

urlpatterns = [
    path("finetunes", FineTunesApi.as_view(), name="api-finetunes"),
    path("finetunes/estimate", FineTuneEstimateApi.as_view(), name="api-finetune-estimate"),
    path("finetunes/compare", FineTunesCompareApi.as_view(), name="api-finetunes-compare"),
    path("finetunes/<int:job_id>", FineTuneDetailApi.as_view(), name="api-finetune"),
    path("finetunes/<int:job_id>/metrics", FineTuneMetricsApi.as_view(), name="api-finetune-metrics"),
    path("finetunes/<int:job_id>/cancel", FineTuneCancelApi.as_view(), name="api-finetune-cancel"),
    path("finetunes/<int:job_id>/adapter", FineTuneAdapterApi.as_view(), name="api-finetune-adapter"),
    path("finetunes/<int:job_id>/merge", FineTuneMergeApi.as_view(), name="api-finetune-merge"),
    path("finetunes/<int:job_id>/merged", FineTuneMergedApi.as_view(), name="api-finetune-merged"),
    path("finetunes/<int:job_id>/export", FineTuneExportApi.as_view(), name="api-finetune-export"),
    path("finetunes/<int:job_id>/gguf", FineTuneGgufApi.as_view(), name="api-finetune-gguf"),
    path("finetunes/<int:job_id>/weights", FineTuneWeightsApi.as_view(), name="api-finetune-weights"),
    path("finetunes/<int:job_id>/losses", FineTuneLossesApi.as_view(), name="api-finetune-losses"),
    path("finetunes/<int:job_id>/generate", FineTuneGenerateApi.as_view(), name="api-finetune-generate"),
    path(
        "finetunes/<int:job_id>/generations/<int:generation_id>",
        GenerationDetailApi.as_view(),
        name="api-finetune-generation",
    ),
    path("finetunes/<int:job_id>/evaluations", EvaluationsApi.as_view(), name="api-finetune-evaluations"),
    path(
        "finetunes/<int:job_id>/evaluations/estimate",
        EvaluationEstimateApi.as_view(),
        name="api-finetune-evaluation-estimate",
    ),
    path("regression-sets", RegressionSetsApi.as_view(), name="api-regression-sets"),
    path("regression-sets/<int:set_id>", RegressionSetDetailApi.as_view(), name="api-regression-set"),
    path(
        "finetunes/<int:job_id>/evaluations/<int:evaluation_id>",
        EvaluationDetailApi.as_view(),
        name="api-finetune-evaluation",
    ),
    path(
        "finetunes/<int:job_id>/evaluations/<int:evaluation_id>/cancel",
        EvaluationCancelApi.as_view(),
        name="api-finetune-evaluation-cancel",
    ),
    path(
        "finetunes/<int:job_id>/evaluations/<int:evaluation_id>/votes",
        EvaluationVotesApi.as_view(),
        name="api-finetune-evaluation-votes",
    ),
    path(
        "finetunes/<int:job_id>/evaluations/<int:evaluation_id>/pairs",
        EvaluationPairsApi.as_view(),
        name="api-finetune-evaluation-pairs",
    ),
    path("promotion-rule", PromotionRuleApi.as_view(), name="api-promotion-rule"),
    path("base-models", BaseModelsApi.as_view(), name="api-base-models"),
    path("endpoints", EndpointsApi.as_view(), name="api-endpoints"),
    path("endpoints/<int:endpoint_id>", EndpointDetailApi.as_view(), name="api-endpoint"),
    path("endpoints/<int:endpoint_id>/check", EndpointCheckApi.as_view(), name="api-endpoint-check"),
    path("documents", generation_apis.DocumentsApi.as_view(), name="api-documents"),
    path("documents/<int:document_id>", generation_apis.DocumentDetailApi.as_view(), name="api-document"),
    path("generation-jobs", generation_apis.GenerationJobsApi.as_view(), name="api-generation-jobs"),
    path("generation-jobs/estimate", generation_apis.GenerationEstimateApi.as_view(), name="api-generation-estimate"),
    path(
        "generation-jobs/<int:generation_job_id>",
        generation_apis.GenerationJobApi.as_view(),
        name="api-generation-job",
    ),
    path(
        "generation-jobs/<int:generation_job_id>/cancel",
        generation_apis.GenerationCancelApi.as_view(),
        name="api-generation-job-cancel",
    ),
    path(
        "generation-jobs/<int:generation_job_id>/rows",
        generation_apis.GenerationRowsApi.as_view(),
        name="api-generation-job-rows",
    ),
    path(
        "generation-jobs/<int:generation_job_id>/accept",
        generation_apis.GenerationAcceptApi.as_view(),
        name="api-generation-job-accept",
    ),
    path("generation-rows/<int:row_id>", generation_apis.GenerationRowApi.as_view(), name="api-generation-row"),
    path(
        "generation-rows/<int:row_id>/accept",
        generation_apis.GenerationRowAcceptApi.as_view(),
        name="api-generation-row-accept",
    ),
    path(
        "generation-rows/<int:row_id>/reject",
        generation_apis.GenerationRowRejectApi.as_view(),
        name="api-generation-row-reject",
    ),
    path("deployments", DeploymentsApi.as_view(), name="api-deployments"),
    path("deployments/<int:deployment_id>", DeploymentDetailApi.as_view(), name="api-deployment"),
    path("deployments/<int:deployment_id>/stop", DeploymentStopApi.as_view(), name="api-deployment-stop"),
    path("routes", RoutesApi.as_view(), name="api-routes"),
    path("routes/<int:route_id>", RouteDetailApi.as_view(), name="api-route"),
    path("routes/<int:route_id>/promote", RoutePromoteApi.as_view(), name="api-route-promote"),
    path("routes/<int:route_id>/rollback", RouteRollbackApi.as_view(), name="api-route-rollback"),
    path("routes/<int:route_id>/stats", RouteStatsApi.as_view(), name="api-route-stats"),
]
