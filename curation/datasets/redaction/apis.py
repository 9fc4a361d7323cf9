"""REST API of redaction: replace the personal data of a dataset's entries, and follow a redaction job."""

from django.urls import reverse
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from curation.common.apis import ProjectScopedApi, StrictInput, dataset_or_not_found, request_actor
from curation.common.permissions import project_for_request
from curation.datasets.redaction.services import INLINE_LIMIT as REDACT_INLINE_LIMIT
from curation.datasets.redaction.services import dataset_redact_or_queue, redaction_preview
from curation.models import RedactionJob, Role
from curation.text.pii.findings import KINDS


class RedactionJobOutput(serializers.ModelSerializer):
    progress = serializers.FloatField()
    url = serializers.SerializerMethodField(help_text="Where to follow the job.")

    class Meta:
        model = RedactionJob
        fields = ["id", "status", "progress", "kinds", "total", "done", "changed", "error", "created_at", "started_at",
                  "finished_at", "url"]  # fmt: skip

    def get_url(self, job: RedactionJob) -> str:
        url = reverse("api-dataset-redaction-job", kwargs={"dataset_id": job.dataset_id, "job_id": job.pk})
        return f"{url}?project={self.context['project'].slug}"


class DatasetRedactApi(ProjectScopedApi):
    class Input(StrictInput):
        kinds = serializers.ListField(
            child=serializers.ChoiceField(choices=KINDS),
            allow_empty=False,
            min_length=1,
            required=False,
            default=list(KINDS),
        )
        dry_run = serializers.BooleanField(default=True)

    class Output(serializers.Serializer):
        dry_run = serializers.BooleanField()
        kinds = serializers.ListField(child=serializers.CharField())
        changed = serializers.IntegerField(help_text="Entries that change (dry run: would change).")
        entries = serializers.IntegerField(required=False, help_text="Dry run: the entries scanned.")
        counts = serializers.DictField(
            child=serializers.IntegerField(), required=False, help_text="Dry run: findings per kind."
        )
        samples = inline_serializer(
            "RedactionSample",
            {
                "entry_id": serializers.IntegerField(),
                "findings": inline_serializer(
                    "RedactionFinding",
                    {
                        "field": serializers.CharField(),
                        "kind": serializers.CharField(),
                        "reason": serializers.CharField(),
                    },
                    many=True,
                ),
                "diff": inline_serializer(
                    "RedactionDiffLine", {"kind": serializers.CharField(), "text": serializers.CharField()}, many=True
                ),
            },
            many=True,
            required=False,
        )

    @extend_schema(
        operation_id="dataset_redact",
        summary="Replace personal data in the entries with placeholders (dry run: preview)",
        description=f"A dataset of up to {REDACT_INLINE_LIMIT:,} entries is redacted at once (200 with `changed`); a "
        "larger one by a worker (202 with the job: follow its `url`). While a redaction job of the dataset is queued "
        "or running, a redaction answers 202 with that job and starts nothing.",
        request=Input,
        responses={200: Output, 202: RedactionJobOutput},
    )
    def post(self, request: Request, dataset_id: int) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        dataset = dataset_or_not_found(project, dataset_id)
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        kinds = data.validated_data["kinds"]
        if not data.validated_data["dry_run"]:
            result = dataset_redact_or_queue(dataset=dataset, kinds=kinds, **request_actor(request))
            if isinstance(result, RedactionJob):
                body = RedactionJobOutput(result, context={"project": project}).data
                return Response(body, status=status.HTTP_202_ACCEPTED)
            return Response({"dry_run": False, "kinds": kinds, "changed": result})
        preview = redaction_preview(dataset=dataset, kinds=kinds)
        samples = [
            {
                "entry_id": sample.entry_id,
                "findings": [{"field": f.field, "kind": f.kind, "reason": f.reason} for f in sample.findings],
                "diff": [{"kind": line.kind, "text": line.text} for line in sample.diff.lines],
            }
            for sample in preview.samples
        ]
        return Response(
            {"dry_run": True, "kinds": preview.kinds, "changed": preview.changed, "entries": preview.entries,
             "counts": preview.counts, "samples": samples}
        )  # fmt: skip


class DatasetRedactionJobApi(ProjectScopedApi):
    @extend_schema(
        operation_id="dataset_redaction_job_retrieve",
        summary="A redaction job of the dataset and its progress",
        responses=RedactionJobOutput,
    )
    def get(self, request: Request, dataset_id: int, job_id: int) -> Response:
        project = project_for_request(request)
        dataset = dataset_or_not_found(project, dataset_id)
        job = dataset.redaction_jobs.filter(pk=job_id).first()
        if job is None:
            raise exceptions.NotFound(f"Redaction job {job_id} not found for dataset {dataset_id}.")
        return Response(RedactionJobOutput(job, context={"project": project}).data)
