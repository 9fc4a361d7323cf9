"""REST API of deployments: members list and read them, editors deploy a fine-tune that passed the promotion gate
and stop a deployment, owners deploy one past the gate with a reason (a person's decision: API keys may not)."""

from django.core.exceptions import ValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from curation.common.apis import IdField, ProjectScopedApi, StrictInput, request_actor
from curation.common.listing import PAGE_PARAMETERS, page_body, page_cursor, page_of, page_size
from curation.common.pagination import keyset_page
from curation.common.permissions import project_for_request
from curation.models import Project, Role
from training import selectors as training_selectors
from training.models import Deployment
from training.serving.deployments.selectors import deployment_get, deployments_for_project
from training.serving.services import deployment_create, deployment_stop


class DeploymentServerOutput(serializers.Serializer):
    id = serializers.IntegerField()
    engine = serializers.CharField()
    supervisor = serializers.CharField(help_text="host:pid of the `serve_models` process that runs the server.")
    ready = serializers.BooleanField()


class DeploymentOutput(serializers.ModelSerializer):
    model = serializers.CharField(source="served_name", help_text="The `model` a call names at the proxy: ft:…")
    finetune = serializers.IntegerField(source="job_id")
    server = DeploymentServerOutput(allow_null=True)
    gate = serializers.DictField(help_text="The promotion gate's verdict when it was deployed (empty: none).")
    created_by = serializers.CharField(source="created_by_label")
    stopped_by = serializers.SerializerMethodField()

    class Meta:
        model = Deployment
        fields = [
            "id", "name", "model", "finetune", "status", "engine", "server", "gate", "forced", "reason", "error",
            "created_by", "created_at", "serving_since", "stopped_at", "stopped_by",
        ]  # fmt: skip

    def get_stopped_by(self, deployment: Deployment) -> str | None:
        return deployment.stopped_by_label if deployment.stopped_at else None


class DeployInput(StrictInput):
    finetune = IdField(help_text="The fine-tune to serve: a succeeded one whose weights are kept.")
    name = serializers.CharField(
        required=False, allow_blank=True, max_length=64,
        help_text="Served as `ft:<project>/<name>`; 1 to 64 lowercase letters, digits and dashes. Default: ft-<id>.",
    )  # fmt: skip
    force = serializers.BooleanField(
        default=False, help_text="Deploy past a failed or missing promotion verdict (owners, signed in; not API keys)."
    )
    reason = serializers.CharField(required=False, allow_blank=True, max_length=2000, help_text="Why, when forced.")


def _deployment_or_404(project: Project, deployment_id: int) -> Deployment:
    deployment = deployment_get(project=project, deployment_id=deployment_id)
    if deployment is None:
        raise exceptions.NotFound(f"Deployment {deployment_id} not found in project '{project.slug}'.")
    return deployment


class DeploymentsApi(ProjectScopedApi):
    @extend_schema(operation_id="deployments_list", summary="Deployments, newest first", parameters=PAGE_PARAMETERS,
                   responses=page_of("DeploymentPage", DeploymentOutput(many=True)))  # fmt: skip
    def get(self, request: Request) -> Response:
        project = project_for_request(request)
        page = keyset_page(
            deployments_for_project(project=project), cursor=page_cursor(request), size=page_size(request)
        )
        return Response(page_body(page, DeploymentOutput))

    @extend_schema(
        operation_id="deployments_create", summary="Deploy a fine-tune (editors; forced: owners)", request=DeployInput,
        responses={201: DeploymentOutput},
        description="The fine-tune must have passed the project's promotion gate: otherwise a 400 whose `gate` says "
        "why. `force` deploys it anyway with a `reason` (an owner, signed in: an API key is refused with a 403). A "
        "model server loads it within seconds to minutes; `status` says when it serves. Audited as "
        "`deployment.create`.",
    )  # fmt: skip
    def post(self, request: Request) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        data = DeployInput(data=request.data)
        data.is_valid(raise_exception=True)
        actor = request_actor(request)
        if data.validated_data["force"]:
            project = project_for_request(request, role=Role.OWNER)
            if actor["actor"] is None:
                raise exceptions.PermissionDenied("Deploying past the promotion gate is an owner's decision: sign in.")
        job = training_selectors.finetune_get(project=project, job_id=data.validated_data["finetune"])
        if job is None:
            raise exceptions.ValidationError({"finetune": [f"Fine-tune {data.validated_data['finetune']} not found."]})
        try:
            deployment = deployment_create(
                job=job, name=data.validated_data.get("name", ""), force=data.validated_data["force"],
                reason=data.validated_data.get("reason", ""), **actor,
            )  # fmt: skip
        except ValidationError as exc:
            # The service names the fine-tune `job`; the body calls it `finetune`.
            problems = {("finetune" if name == "job" else name): found for name, found in exc.message_dict.items()}
            raise exceptions.ValidationError(problems) from None
        return Response(DeploymentOutput(deployment).data, status=status.HTTP_201_CREATED)


class DeploymentDetailApi(ProjectScopedApi):
    @extend_schema(operation_id="deployments_retrieve", summary="A deployment", responses=DeploymentOutput)
    def get(self, request: Request, deployment_id: int) -> Response:
        return Response(DeploymentOutput(_deployment_or_404(project_for_request(request), deployment_id)).data)


class DeploymentStopApi(ProjectScopedApi):
    @extend_schema(
        operation_id="deployments_stop", summary="Stop a deployment (editors)", request=None,
        responses=DeploymentOutput,
        description="Its model server unloads it within seconds. Refused (400, `routes`) while an active route sends "
        "calls to it: roll the route back first. Stopping a stopped deployment changes nothing. Audited as "
        "`deployment.stop`.",
    )  # fmt: skip
    def post(self, request: Request, deployment_id: int) -> Response:
        project = project_for_request(request, role=Role.EDITOR)
        deployment = _deployment_or_404(project, deployment_id)
        try:
            deployment = deployment_stop(deployment=deployment, **request_actor(request))
        except ValidationError as exc:
            raise exceptions.ValidationError(exc.message_dict) from None
        return Response(DeploymentOutput(_deployment_or_404(project, deployment.pk)).data)
