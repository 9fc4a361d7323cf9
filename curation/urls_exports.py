from django.urls import path

from curation.datasets.export import apis as exports

urlpatterns = [
    path("datasets/<int:dataset_id>/export", exports.DatasetExportApi.as_view(), name="api-dataset-export"),
    path(
        "datasets/<int:dataset_id>/export/preview",
        exports.DatasetExportPreviewApi.as_view(),
        name="api-dataset-export-preview",
    ),
    path("datasets/<int:dataset_id>/snapshots", exports.DatasetSnapshotsApi.as_view(), name="api-dataset-snapshots"),
    path("snapshots/<int:snapshot_id>", exports.SnapshotDetailApi.as_view(), name="api-snapshot"),
    path("snapshots/<int:snapshot_id>/download", exports.SnapshotDownloadApi.as_view(), name="api-snapshot-download"),
]
