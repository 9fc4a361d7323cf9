"""Reads of a project's topics: its current run (the latest computation that succeeded), its topics sorted, one
topic, the jobs, and the explorer's `topic` filter. Nothing here computes: that is the job (`services`)."""

from django.core.exceptions import ValidationError
from django.db.models import F, QuerySet

from curation.models import JobStatus, Project, Topic, TopicJob, TopicMembership

# The table's sorts: a column and its direction, the largest first (a click on a header).
SORTS = {"volume": "size", "cost": "cost_usd", "latency": "latency_p95", "errors": "errors"}
SORT_DEFAULT = "volume"


def topic_job_latest(*, project: Project) -> TopicJob | None:
    """The project's newest computation, whatever its state (the page's progress bar and the API's state)."""
    return project.topic_jobs.first()


def topic_job_get(*, project: Project, job_id: int) -> TopicJob | None:
    return project.topic_jobs.filter(pk=job_id).first()


def topic_run_current(*, project: Project) -> TopicJob | None:
    """The project's latest succeeded computation: the topics shown, whose logs' memberships are kept."""
    return project.topic_jobs.filter(status=JobStatus.SUCCEEDED).order_by("-finished_at", "-id").first()


def topics_of_run(*, run: TopicJob, sort: str = SORT_DEFAULT) -> QuerySet[Topic]:
    field = SORTS.get(sort, SORTS[SORT_DEFAULT])
    # Topics without a figure (no cost known) go last; ties go to the larger topic.
    return run.topics.order_by(F(field).desc(nulls_last=True), "-size", "number")


def topic_get(*, project: Project, topic_id: int) -> Topic | None:
    """One topic of the project's current run; None for another project's, an older run's or none."""
    run = topic_run_current(project=project)
    return None if run is None else run.topics.filter(pk=topic_id).first()


def topic_log_ids(*, project: Project, topic_id: int) -> QuerySet:
    """The ids of the logs of a topic of the project's current run, as a subquery: the explorer's `topic` filter.
    A topic of another project, or none, and one of an older run (whose logs are no longer kept) raise a
    ValidationError naming `topic`."""
    if topic_get(project=project, topic_id=topic_id) is None:
        older = Topic.objects.filter(pk=topic_id, job__project=project).exists()
        reason = (
            f"Topic {topic_id} is from an older computation of the topics, whose logs are no longer kept: open the "
            "Topics page for the current ones."
            if older
            else f"Topic {topic_id} not found in this project."
        )
        raise ValidationError({"topic": reason})
    return TopicMembership.objects.filter(topic_id=topic_id).values("log_id")
