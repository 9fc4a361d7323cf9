"""The app's models, one module per feature. Everything is imported here: Django looks for the app's models in
`curation.models`, migrations name `curation.models.BackgroundWork`, and callers import `from curation.models`."""

from curation.models.datasets import (
    Dataset,
    DatasetEntry,
    DatasetKind,
    DatasetSnapshot,
    EmbeddingJob,
    EntryEmbedding,
    RedactionJob,
    Split,
)
from curation.models.jobs import BackgroundWork, EmbeddingWork, JobStatus
from curation.models.logs import (
    AuditEvent,
    BulkAction,
    BulkJob,
    ImportJob,
    ImportLineError,
    LogEmbedding,
    LogEmbeddingJob,
    LogEntry,
    LogStatus,
    LogTag,
    SavedView,
    Tag,
    original_decode,
)
from curation.models.projects import ApiKey, Membership, Project, Role, actor_label
from curation.models.scores import LogScore, ScoreSource
from curation.models.topics import Topic, TopicJob, TopicMembership

__all__ = [
    "ApiKey",
    "AuditEvent",
    "BackgroundWork",
    "BulkAction",
    "BulkJob",
    "Dataset",
    "DatasetEntry",
    "DatasetKind",
    "DatasetSnapshot",
    "EmbeddingJob",
    "EmbeddingWork",
    "EntryEmbedding",
    "ImportJob",
    "ImportLineError",
    "JobStatus",
    "LogEmbedding",
    "LogEmbeddingJob",
    "LogEntry",
    "LogScore",
    "LogStatus",
    "LogTag",
    "Membership",
    "Project",
    "RedactionJob",
    "Role",
    "SavedView",
    "ScoreSource",
    "Split",
    "Tag",
    "Topic",
    "TopicJob",
    "TopicMembership",
    "actor_label",
    "original_decode",
]
