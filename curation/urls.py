from django.urls import path

from curation.audit import apis as audit
from curation.datasets.apis import (
    DatasetDetailApi,
    DatasetEntriesApi,
    DatasetEntryApi,
    DatasetPairsFromEditsApi,
    DatasetsApi,
    DatasetSplitApi,
)
from curation.datasets.dedup import apis as dedup
from curation.datasets.redaction.apis import DatasetRedactApi, DatasetRedactionJobApi
from curation.logs import apis as logs
from curation.logs.bulk.apis import BulkJobApi, LogsBulkApi
from curation.logs.imports import apis as imports
from curation.logs.otel.apis import OtelTracesApi
from curation.logs.scores.apis import LogScoreDetailApi, LogScoresApi
from curation.logs.similar import apis as similar
from curation.logs.topics import apis as topics
from curation.tags.apis import TagDetailApi, TagMergeApi, TagsApi

urlpatterns = [
    path("logs", logs.LogsApi.as_view(), name="api-logs"),
    path("logs/bulk", LogsBulkApi.as_view(), name="api-logs-bulk"),
    path("logs/stats", logs.LogStatsApi.as_view(), name="api-logs-stats"),
    path("logs/<int:log_id>", logs.LogDetailApi.as_view(), name="api-log-detail"),
    path("logs/<int:log_id>/original", logs.LogOriginalApi.as_view(), name="api-log-original"),
    path("logs/<int:log_id>/scores", LogScoresApi.as_view(), name="api-log-scores"),
    path("logs/<int:log_id>/scores/<int:score_id>", LogScoreDetailApi.as_view(), name="api-log-score"),
    path("logs/<int:log_id>/similar", similar.LogSimilarApi.as_view(), name="api-log-similar"),
    path("log-embeddings", similar.LogEmbeddingsApi.as_view(), name="api-log-embeddings"),
    path("topics", topics.TopicsApi.as_view(), name="api-topics"),
    path("topics/<int:topic_id>", topics.TopicDetailApi.as_view(), name="api-topic"),
    path("topic-jobs", topics.TopicJobsApi.as_view(), name="api-topic-jobs"),
    path("topic-jobs/<int:job_id>", topics.TopicJobApi.as_view(), name="api-topic-job"),
    path("bulk-jobs/<int:job_id>", BulkJobApi.as_view(), name="api-bulk-job"),
    # OTLP/HTTP: an exporter given the endpoint <base>/api/v1/otel appends /v1/traces itself.
    path("otel/v1/traces", OtelTracesApi.as_view(), name="api-otel-traces"),
    path("imports", imports.ImportsApi.as_view(), name="api-imports"),
    path("imports/<int:job_id>", imports.ImportDetailApi.as_view(), name="api-import-detail"),
    path("imports/<int:job_id>/errors", imports.ImportErrorsApi.as_view(), name="api-import-errors"),
    path("datasets", DatasetsApi.as_view(), name="api-datasets"),
    path("datasets/<int:dataset_id>", DatasetDetailApi.as_view(), name="api-dataset"),
    path("datasets/<int:dataset_id>/entries", DatasetEntriesApi.as_view(), name="api-dataset-entries"),
    path(
        "datasets/<int:dataset_id>/entries/<int:entry_id>",
        DatasetEntryApi.as_view(),
        name="api-dataset-entry",
    ),
    path("datasets/<int:dataset_id>/split", DatasetSplitApi.as_view(), name="api-dataset-split"),
    path("datasets/<int:dataset_id>/pairs", DatasetPairsFromEditsApi.as_view(), name="api-dataset-pairs"),
    path("datasets/<int:dataset_id>/redact", DatasetRedactApi.as_view(), name="api-dataset-redact"),
    path(
        "datasets/<int:dataset_id>/redaction-jobs/<int:job_id>",
        DatasetRedactionJobApi.as_view(),
        name="api-dataset-redaction-job",
    ),
    path(
        "datasets/<int:dataset_id>/embeddings",
        dedup.DatasetEmbeddingsApi.as_view(),
        name="api-dataset-embeddings",
    ),
    path(
        "datasets/<int:dataset_id>/near-duplicates",
        dedup.DatasetNearDuplicatesApi.as_view(),
        name="api-dataset-near-duplicates",
    ),
    path(
        "datasets/<int:dataset_id>/near-duplicates/keep-one",
        dedup.DatasetKeepOneApi.as_view(),
        name="api-dataset-near-duplicates-keep-one",
    ),
    path("tags", TagsApi.as_view(), name="api-tags"),
    path("tags/<int:tag_id>", TagDetailApi.as_view(), name="api-tag"),
    path("tags/<int:tag_id>/merge", TagMergeApi.as_view(), name="api-tag-merge"),
    path("audit", audit.AuditApi.as_view(), name="api-audit"),
]
