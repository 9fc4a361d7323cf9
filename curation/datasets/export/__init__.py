"""Exports of datasets: writers per format (`formats`), the streaming and previews built on them
(`service`) and snapshots (`snapshots`)."""

from curation.datasets.export.formats import FORMATS, ExportReport
from curation.datasets.export.services import Export, export_check, export_preview, export_stream
from curation.datasets.export.snapshots import snapshot_build, snapshot_create, snapshot_request

__all__ = [
    "FORMATS",
    "Export",
    "ExportReport",
    "export_check",
    "export_preview",
    "export_stream",
    "snapshot_build",
    "snapshot_create",
    "snapshot_request",
]
