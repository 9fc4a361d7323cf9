"""Where the proxy forwards a project's calls: the providers' paths, the check that an upstream URL is one
LOGTUNE_PROXY_UPSTREAM_HOSTS allows, and an owner's change of the project's upstreams."""

from dataclasses import dataclass
from urllib.parse import urlsplit

import orjson
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction

from curation.audit.services import audit_record
from curation.models import Project


@dataclass(frozen=True, slots=True)
class Provider:
    name: str  # the envelope's `provider`
    base_url_field: str  # the Project field holding the upstream's base URL
    path: str  # appended to it

    def upstream_url(self, project: Project) -> str:
        return getattr(project, self.base_url_field).rstrip("/") + self.path

    def error_body(self, message: str, kind: str) -> bytes:
        """An error in the provider's own shape, so its SDK raises its usual exception with our message."""
        if self.name == "anthropic":
            return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})
        return orjson.dumps({"error": {"message": message, "type": kind, "param": None, "code": None}})


OPENAI = Provider(name="openai", base_url_field="openai_base_url", path="/chat/completions")
OPENAI_RESPONSES = Provider(name="openai", base_url_field="openai_base_url", path="/responses")
ANTHROPIC = Provider(name="anthropic", base_url_field="anthropic_base_url", path="/v1/messages")


def upstream_url_problem(url: str, *, setting: str = "LOGTUNE_PROXY_UPSTREAM_HOSTS") -> str:
    """Why `url` cannot be a proxy upstream (or, with `setting` LOGTUNE_ENDPOINT_HOSTS, a model endpoint), or ""
    when it can.

    The server sends requests to it, so only http(s) URLs to a host and port that LOGTUNE_PROXY_UPSTREAM_HOSTS
    allows are accepted: an owner could otherwise point the server at an internal address or, on an allowed host,
    at another of its services (SSRF). An entry `host` allows that host on its scheme's default port (443, 80),
    `host:port` that port, `host:*` any port, and `*` anything. Checked when an owner saves the URL and again on
    every call, so a narrower setting applies to URLs saved before it.
    """
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:
        return "is not a URL"
    if parts.scheme not in ("http", "https"):
        return "must start with http:// or https://"
    if not host:
        return "has no host"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials (the key goes in its own field)"
    allowed = getattr(settings, setting)
    if "*" in allowed:
        return ""
    default = _DEFAULT_PORTS[parts.scheme]
    port = port or default
    entries = {upstream_entry_split(entry) for entry in allowed}
    if {(host, str(port)), (host, "*")} & entries or (port == default and (host, "") in entries):
        return ""
    shown = f"[{host}]" if ":" in host else host
    if any(name == host for name, _ in entries):
        return f"port {port} of {shown} is not among this server's {setting} ({', '.join(allowed)})"
    return f"host {shown} is not among this server's {setting} ({', '.join(allowed)})"


_DEFAULT_PORTS = {"http": 80, "https": 443}


def upstream_entry_split(entry: str) -> tuple[str, str]:
    """An entry of LOGTUNE_PROXY_UPSTREAM_HOSTS as (host, port): port "" for a bare host (the URL scheme's default
    port), "*" or digits. An IPv6 address takes brackets to carry a port (`[fd00::1]:8000`)."""
    entry = entry.strip().lower()
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, rest.removeprefix(":")
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return host, port
    return entry, ""


@transaction.atomic
def project_upstreams_update(
    *, project: Project, openai_base_url: str, anthropic_base_url: str, actor: User | None = None
) -> Project:
    changed = {
        name: {"from": getattr(project, name), "to": value}
        for name, value in (("openai_base_url", openai_base_url), ("anthropic_base_url", anthropic_base_url))
        if getattr(project, name) != value
    }
    if changed:
        for name, change in changed.items():
            setattr(project, name, change["to"])
        project.save(update_fields=list(changed))
        audit_record(project=project, action="project.update", actor=actor, detail=changed)
    return project
