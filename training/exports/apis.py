"""REST API of exports: a fine-tune as a zip for vLLM, Ollama, merged safetensors or GGUF; converting it to GGUF."""

from django.http import StreamingHttpResponse
from django.utils.http import content_disposition_header
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.response import Response

from curation.common.apis import NotReadyResponse, ProjectScopedApi, request_actor
from curation.common.permissions import project_for_request
from curation.datasets.export.apis import FormatIsNotARenderer
from curation.models import Role
from training.exports.selectors import Export, ExportFormat, ExportNotReady
from training.exports.services import finetune_export, finetune_gguf_request
from training.finetunes.apis import PROJECT, STATE_RESPONSE, job_or_404, state_call
from training.finetunes.serializers import FineTuneOutput

FORMAT = OpenApiParameter(
    "format", str, enum=ExportFormat.values, required=True,
    description="vllm: the adapter (or weights) and vllm.txt; ollama: the adapter (or weights) and a Modelfile; "
                "merged: the merged safetensors (after a merge; a full fine-tune's own weights); gguf: the GGUF file "
                "once converted (POST .../gguf), with llama.cpp.txt and a Modelfile. Each holds logtune.json.",
)  # fmt: skip


class FineTuneExportApi(ProjectScopedApi):
    content_negotiation_class = FormatIsNotARenderer  # `?format=` is the runtime's, not a renderer

    @extend_schema(
        operation_id="finetunes_export",
        summary="Download a fine-tune ready for another runtime (vLLM, Ollama, merged safetensors, GGUF), as a zip",
        description=(
            "A streamed zip under one folder (`finetune-{id}-{format}/`). 409 with the reason when it cannot be made "
            "now: the job has not succeeded, its weights were deleted, `merged` before a merge, `gguf` before a "
            "conversion or without llama.cpp's converter (`LOGTUNE_LLAMA_CPP_DIR`). Audited as `finetune.download`. "
            "Needs the editor role, like the adapter's download."
        ),
        parameters=[PROJECT, FORMAT],
        responses={(200, "application/zip"): OpenApiTypes.BINARY, 409: NotReadyResponse},
    )  # fmt: skip
    def get(self, request: Request, job_id: int) -> StreamingHttpResponse | Response:
        project = project_for_request(request, role=Role.EDITOR)  # weights trained on the project's data: an export
        job = job_or_404(project, job_id)
        fmt = request.query_params.get("format", "")
        if fmt not in ExportFormat.values:
            raise exceptions.ValidationError({"format": [f"One of {', '.join(ExportFormat.values)}."]})
        try:
            export = finetune_export(job=job, fmt=fmt, **request_actor(request))
        except ExportNotReady as exc:
            return Response({"detail": str(exc), "status": job.status}, status=status.HTTP_409_CONFLICT)
        return zip_response(export)


class FineTuneGgufApi(ProjectScopedApi):
    @extend_schema(
        operation_id="finetunes_gguf",
        summary="Convert a fine-tune to GGUF with llama.cpp's converter, on a GPU worker",
        description=(
            "Queues the conversion (202); `gguf_status` follows it, then `/export?format=gguf` downloads the result. "
            "409 when the job has no weights, or llama.cpp's converter is not installed (`LOGTUNE_LLAMA_CPP_DIR`). "
            "Audited as `finetune.gguf`. Needs the editor role."
        ),
        parameters=[PROJECT], request=None, responses={202: FineTuneOutput, 409: STATE_RESPONSE},
    )  # fmt: skip
    def post(self, request: Request, job_id: int) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        job = state_call(finetune_gguf_request, job=job_or_404(project, job_id), **request_actor(request))
        return Response(FineTuneOutput(job).data, status=status.HTTP_202_ACCEPTED)


def zip_response(export: Export) -> StreamingHttpResponse:
    response = StreamingHttpResponse(export.stream(), content_type="application/zip")
    response["Content-Disposition"] = content_disposition_header(True, export.filename)
    return response
