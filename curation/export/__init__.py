"""Exports of datasets: writers per format (`formats`) and the streaming, previews and snapshots
built on them (`service`)."""

from curation.export.formats import FORMATS, ExportReport
from curation.export.service import Export, export_check, export_preview, export_stream, snapshot_create

__all__ = ["FORMATS", "Export", "ExportReport", "export_check", "export_preview", "export_stream", "snapshot_create"]
