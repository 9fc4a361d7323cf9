"""A project's model endpoints: adding, changing and removing them (owners; audited, the key never in the
audit), checking one with a tiny call, and what a run of calls would cost."""

from dataclasses import dataclass
from decimal import Decimal

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from curation.audit.services import audit_record
from curation.logs.pricing import cost_usd
from curation.models import ApiKey, Project
from curation.proxy.upstreams import upstream_url_problem
from training.endpoints.client import ChatAnswer, EndpointTarget, chat_one
from training.endpoints.secrets import secret_decrypt, secret_encrypt
from training.models import Deployment, DeploymentStatus, ModelEndpoint

# A model named so is one of the project's deployed fine-tunes (training/serving): its calls go to the model server
# that serves it, wherever that is now, with no URL of the endpoint's own.
DEPLOYED_PREFIX = "ft:"
MAX_CONCURRENCY = 64
MAX_TIMEOUT_S = 3600
CHECK_TIMEOUT_S = 15
CHECK_REQUEST = {"messages": [{"role": "user", "content": "Reply with the word OK."}], "max_tokens": 8}
_SETTINGS = ("name", "base_url", "model", "max_concurrency", "timeout_s", "input_price_per_mtok",
             "output_price_per_mtok")  # fmt: skip


@dataclass(slots=True)
class EndpointFields:
    name: str
    base_url: str
    model: str
    max_concurrency: int = 8
    timeout_s: int = 120
    input_price_per_mtok: Decimal | None = None
    output_price_per_mtok: Decimal | None = None


def endpoint_problems(fields: EndpointFields) -> dict[str, str]:
    """What is wrong with the fields, by field name; empty when nothing is."""
    problems: dict[str, str] = {}
    if not fields.name.strip():
        problems["name"] = "Name the endpoint."
    if not fields.model.strip():
        problems["model"] = "Name the model each call asks for."
    if fields.model.strip().startswith(DEPLOYED_PREFIX):
        if fields.base_url.strip():
            problems["base_url"] = "Leave it empty: a deployed fine-tune is called where its model server runs."
    elif problem := upstream_url_problem(fields.base_url, setting="LOGTUNE_ENDPOINT_HOSTS"):
        problems["base_url"] = f"The URL {problem}."
    if not 1 <= fields.max_concurrency <= MAX_CONCURRENCY:
        problems["max_concurrency"] = f"Between 1 and {MAX_CONCURRENCY}."
    if not 1 <= fields.timeout_s <= MAX_TIMEOUT_S:
        problems["timeout_s"] = f"Between 1 and {MAX_TIMEOUT_S} seconds."
    for name in ("input_price_per_mtok", "output_price_per_mtok"):
        price = getattr(fields, name)
        if price is not None and price < 0:
            problems[name] = "A price is zero or more."
    return problems


def _key_hint(secret: str) -> str:
    return f"…{secret[-4:]}" if len(secret) >= 12 else ("…" if secret else "")  # a short key is not hinted at


@transaction.atomic
def endpoint_create(
    *, project: Project, fields: EndpointFields, secret: str = "", actor: User | None = None,
    api_key: ApiKey | None = None,
) -> ModelEndpoint:  # fmt: skip
    """`secret`: the endpoint's own API key, "" for none. Raises ValidationError naming the field."""
    problems = endpoint_problems(fields)
    if problems:
        raise ValidationError(problems)
    endpoint = ModelEndpoint(
        project=project, **{name: getattr(fields, name) for name in _SETTINGS},
        api_key_encrypted=secret_encrypt(secret) if secret else "", api_key_hint=_key_hint(secret),
        created_by=actor,
    )  # fmt: skip
    endpoint.name = endpoint.name.strip()
    try:
        with transaction.atomic():
            endpoint.save()
    except IntegrityError:
        raise ValidationError({"name": f"The project has an endpoint named '{endpoint.name}' already."}) from None
    audit_record(project=project, action="endpoints.create", actor=actor, api_key=api_key,
                 detail=_described(endpoint) | {"key": "set" if secret else "none"})  # fmt: skip
    return endpoint


@transaction.atomic
def endpoint_update(
    *, endpoint: ModelEndpoint, fields: EndpointFields, secret: str | None = None, actor: User | None = None,
    api_key: ApiKey | None = None,
) -> ModelEndpoint:  # fmt: skip
    """Change the settings; `secret` (the endpoint's key) None keeps it, "" removes it, any other value replaces
    it. The URL is judged only when it changes: each call judges it again anyway."""
    problems = endpoint_problems(fields)
    if fields.base_url == endpoint.base_url:
        problems.pop("base_url", None)
    if problems:
        raise ValidationError(problems)
    changed = {name: {"from": str(getattr(endpoint, name)), "to": str(getattr(fields, name))}
               for name in _SETTINGS if getattr(endpoint, name) != getattr(fields, name)}  # fmt: skip
    for name in _SETTINGS:
        setattr(endpoint, name, getattr(fields, name))
    if secret is not None:
        endpoint.api_key_encrypted = secret_encrypt(secret) if secret else ""
        endpoint.api_key_hint = _key_hint(secret)
        changed["key"] = {"to": "replaced" if secret else "removed"}  # never the key itself
    endpoint.updated_at = timezone.now()
    try:
        with transaction.atomic():
            endpoint.save()
    except IntegrityError:
        raise ValidationError({"name": f"The project has an endpoint named '{fields.name}' already."}) from None
    if changed:
        audit_record(project=endpoint.project, action="endpoints.update", actor=actor, api_key=api_key,
                     detail={"endpoint": endpoint.pk, "name": endpoint.name, "changed": changed})  # fmt: skip
    return endpoint


@transaction.atomic
def endpoint_delete(*, endpoint: ModelEndpoint, actor: User | None = None, api_key: ApiKey | None = None) -> None:
    audit_record(project=endpoint.project, action="endpoints.delete", actor=actor, api_key=api_key,
                 detail=_described(endpoint))  # fmt: skip
    endpoint.delete()


def _described(endpoint: ModelEndpoint) -> dict:
    return {"endpoint": endpoint.pk, "name": endpoint.name, "base_url": endpoint.base_url, "model": endpoint.model}


class EndpointRefused(Exception):
    """The endpoint's URL is no longer allowed by LOGTUNE_ENDPOINT_HOSTS (a narrower setting since it was saved)."""


def endpoint_target(endpoint: ModelEndpoint, **overrides: float) -> EndpointTarget:
    """What the client needs to call the endpoint, its key decrypted. The URL is checked again against today's
    LOGTUNE_ENDPOINT_HOSTS. Raises EndpointRefused, or SecretUnreadable when no configured key decrypts its key.

    An endpoint whose model is a deployed fine-tune (`ft:<project>/<name>`) is called at the model server serving
    it now; the operator's servers need no entry in LOGTUNE_ENDPOINT_HOSTS."""
    if endpoint.model.startswith(DEPLOYED_PREFIX):
        return _deployed_target(endpoint, **overrides)
    problem = upstream_url_problem(endpoint.base_url, setting="LOGTUNE_ENDPOINT_HOSTS")
    if problem:
        raise EndpointRefused(f"Endpoint '{endpoint.name}': its URL {problem}.")
    api_key = secret_decrypt(endpoint.api_key_encrypted) if endpoint.api_key_encrypted else ""
    settings = {"max_concurrency": endpoint.max_concurrency, "timeout_s": endpoint.timeout_s} | overrides
    return EndpointTarget(base_url=endpoint.base_url, model=endpoint.model, api_key=api_key, **settings)  # type: ignore[arg-type]


def _deployed_target(endpoint: ModelEndpoint, **overrides: float) -> EndpointTarget:
    url = (
        Deployment.objects.filter(
            project_id=endpoint.project_id, served_name=endpoint.model, status=DeploymentStatus.SERVING
        )
        .values_list("server__url", flat=True)
        .first()
    )
    if not url:
        raise EndpointRefused(f"Endpoint '{endpoint.name}': {endpoint.model} is not serving in this project.")
    settings = {"max_concurrency": endpoint.max_concurrency, "timeout_s": endpoint.timeout_s} | overrides
    return EndpointTarget(base_url=url, model=endpoint.model, **settings)  # type: ignore[arg-type]


def endpoint_check(endpoint: ModelEndpoint) -> ChatAnswer:
    """One tiny call ("Reply with the word OK."), without retries and within CHECK_TIMEOUT_S: does the endpoint
    answer, with what model, how fast."""
    target = endpoint_target(endpoint, timeout_s=min(endpoint.timeout_s, CHECK_TIMEOUT_S), max_retries=0)
    return chat_one(target, CHECK_REQUEST)


def endpoint_cost_usd(endpoint: ModelEndpoint, *, prompt_tokens: int, completion_tokens: int) -> Decimal | None:
    """What the tokens cost at the endpoint's own prices, else the price table's for its model; None when neither
    has a price (a local server: free, as far as we know)."""
    if endpoint.input_price_per_mtok is not None or endpoint.output_price_per_mtok is not None:
        price_in = endpoint.input_price_per_mtok or Decimal(0)
        price_out = endpoint.output_price_per_mtok or Decimal(0)
        return (prompt_tokens * price_in + completion_tokens * price_out) / Decimal(1_000_000)
    return cost_usd(model=endpoint.model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
