from django.urls import path

from curation.apis import audit, datasets, embeddings, imports, logs, similar

urlpatterns = [
    path("logs", logs.LogsApi.as_view(), name="api-logs"),
    path("logs/bulk", datasets.LogsBulkApi.as_view(), name="api-logs-bulk"),
    path("logs/<int:log_id>", logs.LogDetailApi.as_view(), name="api-log-detail"),
    path("logs/<int:log_id>/original", logs.LogOriginalApi.as_view(), name="api-log-original"),
    path("logs/<int:log_id>/similar", similar.LogSimilarApi.as_view(), name="api-log-similar"),
    path("log-embeddings", similar.LogEmbeddingsApi.as_view(), name="api-log-embeddings"),
    path("bulk-jobs/<int:job_id>", datasets.BulkJobApi.as_view(), name="api-bulk-job"),
    path("imports", imports.ImportsApi.as_view(), name="api-imports"),
    path("imports/<int:job_id>", imports.ImportDetailApi.as_view(), name="api-import-detail"),
    path("imports/<int:job_id>/errors", imports.ImportErrorsApi.as_view(), name="api-import-errors"),
    path("datasets", datasets.DatasetsApi.as_view(), name="api-datasets"),
    path("datasets/<int:dataset_id>", datasets.DatasetDetailApi.as_view(), name="api-dataset"),
    path("datasets/<int:dataset_id>/entries", datasets.DatasetEntriesApi.as_view(), name="api-dataset-entries"),
    path(
        "datasets/<int:dataset_id>/entries/<int:entry_id>",
        datasets.DatasetEntryApi.as_view(),
        name="api-dataset-entry",
    ),
    path("datasets/<int:dataset_id>/split", datasets.DatasetSplitApi.as_view(), name="api-dataset-split"),
    path("datasets/<int:dataset_id>/redact", datasets.DatasetRedactApi.as_view(), name="api-dataset-redact"),
    path(
        "datasets/<int:dataset_id>/redaction-jobs/<int:job_id>",
        datasets.DatasetRedactionJobApi.as_view(),
        name="api-dataset-redaction-job",
    ),
    path(
        "datasets/<int:dataset_id>/embeddings",
        embeddings.DatasetEmbeddingsApi.as_view(),
        name="api-dataset-embeddings",
    ),
    path(
        "datasets/<int:dataset_id>/near-duplicates",
        embeddings.DatasetNearDuplicatesApi.as_view(),
        name="api-dataset-near-duplicates",
    ),
    path(
        "datasets/<int:dataset_id>/near-duplicates/keep-one",
        embeddings.DatasetKeepOneApi.as_view(),
        name="api-dataset-near-duplicates-keep-one",
    ),
    path("tags", datasets.TagsApi.as_view(), name="api-tags"),
    path("tags/<int:tag_id>", datasets.TagDetailApi.as_view(), name="api-tag"),
    path("tags/<int:tag_id>/merge", datasets.TagMergeApi.as_view(), name="api-tag-merge"),
    path("audit", audit.AuditApi.as_view(), name="api-audit"),
]
