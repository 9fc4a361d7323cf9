"""Storing the GenAI spans of an OTLP trace export as logs."""

from dataclasses import dataclass

from curation.logs.ingest import RawItem
from curation.logs.ingest.otel import is_model_call, spans_split, the_span
from curation.logs.services import IngestResult, PiiBudget, logs_ingest
from curation.models import Project

_MAX_LISTED = 5  # rejections named in the answer's message; the count has them all


@dataclass(slots=True)
class SpansResult:
    spans: int
    ignored: int  # not a call to a model: not stored
    result: IngestResult

    @property
    def message(self) -> str:
        """What the OTLP answer's `error_message` says: empty when every span was stored (or was a duplicate)."""
        said = []
        if self.ignored:
            said.append(f"{self.ignored} of {self.spans} spans are not GenAI model calls and were not stored")
        if self.result.rejected:
            reasons = "; ".join(rejection.error for rejection in self.result.rejected[:_MAX_LISTED])
            said.append(f"{len(self.result.rejected)} GenAI spans rejected: {reasons}")
        if self.result.unreadable:
            reasons = "; ".join(kept.error for kept in self.result.unreadable[:_MAX_LISTED])
            said.append(f"{len(self.result.unreadable)} GenAI spans kept as unreadable logs: {reasons}")
        return ". ".join(said)


def otel_spans_ingest(*, project: Project, export: dict, pii_budget: PiiBudget | None = None) -> SpansResult:
    """Store the spans of an OTLP JSON trace export that record a call to a model, one log each (a re-sent span is
    a duplicate, by `trace_id:span_id`); the others are counted and left out."""
    spans = list(spans_split(export))
    calls = [one for one in spans if is_model_call(the_span(one)[0])]
    items = [RawItem(value=one, text=None) for one in calls]
    result = logs_ingest(project=project, items=items, pii_budget=pii_budget)
    for rejection in [*result.rejected, *result.unreadable]:
        span = the_span(calls[rejection.index])[0]
        rejection.error = (
            f"span {span.get('traceId')}:{span.get('spanId')} ({span.get('name', '')}): {rejection.error}"
        )
    return SpansResult(spans=len(spans), ignored=len(spans) - len(calls), result=result)
