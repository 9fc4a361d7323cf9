"""The serving supervisor (`manage.py serve_models`, one per GPU worker): it makes the model servers of its machine
match the deployments (docs/serving.md).

Each round (every ROUND_SECONDS) it
- writes its servers' heartbeat, and hands back the deployments of supervisors that stopped writing theirs;
- claims deployments waiting for a server (row locks, SKIP LOCKED: many supervisors share the work);
- starts one engine process per base model (adapters of every fine-tune of that base on it) or per full fine-tune,
  restarts one that died, and waits for it to answer its health check;
- loads the adapters of the deployments it claimed and unloads those of deployments stopped;
- stops servers that serve nothing any more.
The processes die with the supervisor (training/processes.py), and their deployments are claimed again.
"""

import logging
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from training.models import LIVE_DEPLOYMENT, Deployment, DeploymentStatus, ModelServer
from training.processes import log_tail, signal_group, spawn_group
from training.serving.engines import EngineError, EngineSpec, adapter_load, adapter_unload, engine_choose, server_ready

logger = logging.getLogger(__name__)

ROUND_SECONDS = 2.0
# A supervisor that has written no heartbeat for this long is gone: its deployments are claimed by another.
STALE_AFTER = timedelta(seconds=30)
# How long a server may take to answer its health check after it started (vLLM loads weights, compiles graphs).
START_TIMEOUT_S = 900.0
MAX_RESTARTS = 3
# The name a server's base model answers to: the proxy only ever names the adapters on it.
BASE_NAME = "base"


@dataclass
class _Process:
    server_id: int
    popen: subprocess.Popen
    spec: EngineSpec
    started: float = field(default_factory=time.monotonic)


class Supervisor:
    def __init__(self, *, engine: str | None = None) -> None:
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.engine = engine or engine_choose()
        self.processes: dict[int, _Process] = {}  # by ModelServer id
        self.logs = Path(settings.VAR_DIR) / "serving"
        self.logs.mkdir(parents=True, exist_ok=True)

    def round(self) -> None:
        """One pass of the loop; each step is safe to repeat."""
        now = timezone.now()
        ModelServer.objects.filter(supervisor=self.name).update(heartbeat_at=now)
        (self.logs / "heartbeat").touch()  # for a container's health check
        _release_stale(now)
        self._claim()
        for server in ModelServer.objects.filter(supervisor=self.name):
            self._tend(server)

    def stop(self) -> None:
        """Stop every server of this supervisor and hand their deployments back (another supervisor claims them)."""
        for process in self.processes.values():
            signal_group(process.popen, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                signal_group(process.popen, signal.SIGKILL)
        self.processes.clear()
        with transaction.atomic():
            mine = ModelServer.objects.filter(supervisor=self.name)
            Deployment.objects.filter(server__in=mine, status__in=LIVE_DEPLOYMENT).update(
                status=DeploymentStatus.PENDING, server=None
            )
            mine.delete()

    def _claim(self) -> None:
        with transaction.atomic():
            waiting = (
                Deployment.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("job")
                .filter(status=DeploymentStatus.PENDING, server__isnull=True)
            )
            for deployment in waiting:
                server = self._server_for(deployment)
                deployment.server, deployment.engine, deployment.status = (
                    server,
                    server.engine,
                    DeploymentStatus.LOADING,
                )
                deployment.error = ""
                deployment.save(update_fields=["server", "engine", "status", "error"])
                logger.info("serving.claimed", extra={"deployment": deployment.served_name, "server": server.pk})

    def _server_for(self, deployment: Deployment) -> ModelServer:
        job = deployment.job
        weights, adapters = (job.model, True) if job.uses_adapter else (str(job.adapter_dir), False)
        if adapters:  # every fine-tune of one base shares its server
            existing = ModelServer.objects.filter(supervisor=self.name, weights=weights, engine=self.engine).first()
            if existing is not None:
                return existing
        port = _free_port(settings.LOGTUNE_SERVING_FIRST_PORT, taken={p.spec.port for p in self.processes.values()})
        return ModelServer.objects.create(
            supervisor=self.name, engine=self.engine, weights=weights,
            url=f"http://{settings.LOGTUNE_SERVING_HOST}:{port}/v1",
        )  # fmt: skip

    def _tend(self, server: ModelServer) -> None:
        deployments = list(server.deployments.select_related("job").all())
        live = [d for d in deployments if d.status in LIVE_DEPLOYMENT]
        process = self.processes.get(server.pk)
        if not live:
            self._retire(server, process)
            return
        if process is None or process.popen.poll() is not None:
            self._start(server, live, died=process is not None)
            return
        if not server.ready:
            if server_ready(server.url):
                ModelServer.objects.filter(pk=server.pk).update(ready=True, error="")
                server.ready = True
            elif time.monotonic() - process.started > START_TIMEOUT_S:
                self._fail(server, live, f"The model server did not answer within {START_TIMEOUT_S:.0f} s.")
                return
            else:
                return
        for deployment in deployments:
            self._reconcile(server, deployment, adapters=process.spec.adapters)

    def _start(self, server: ModelServer, live: list[Deployment], *, died: bool) -> None:
        if died:
            old = self.processes.pop(server.pk)
            tail = "\n".join(log_tail(self._log_path(server), 20))
            if server.restarts >= MAX_RESTARTS:
                self._fail(
                    server, live, f"The model server stopped {server.restarts + 1} times. Its log ends:\n{tail}"
                )
                return
            logger.warning("serving.server_died", extra={"server": server.pk, "code": old.popen.returncode})
            ModelServer.objects.filter(pk=server.pk).update(restarts=server.restarts + 1, ready=False)
            Deployment.objects.filter(server=server, status=DeploymentStatus.SERVING).update(
                status=DeploymentStatus.LOADING
            )
        job = live[0].job
        adapters = job.uses_adapter
        port = int(server.url.rsplit(":", 1)[1].split("/", 1)[0])
        spec = EngineSpec(
            engine=server.engine, weights=server.weights, port=port, adapters=adapters,
            served_name=BASE_NAME if adapters else live[0].served_name,
        )  # fmt: skip
        popen = spawn_group(spec.command(), self._log_path(server), signal.SIGTERM, extra_env=spec.environment())
        self.processes[server.pk] = _Process(server_id=server.pk, popen=popen, spec=spec)
        ModelServer.objects.filter(pk=server.pk).update(pid=popen.pid, ready=False, started_at=timezone.now())
        logger.info("serving.server_started", extra={"server": server.pk, "engine": server.engine, "port": port})

    def _reconcile(self, server: ModelServer, deployment: Deployment, *, adapters: bool) -> None:
        if deployment.status == DeploymentStatus.LOADING:
            try:
                if adapters:
                    adapter_load(server.url, name=deployment.served_name, path=str(deployment.job.adapter_dir))
            except EngineError as exc:
                if "already" not in str(exc):  # a restart of ours finds it loaded: that is what we want
                    _deployment_failed(deployment, f"The model server refused the adapter: {exc}")
                    return
            Deployment.objects.filter(pk=deployment.pk, status=DeploymentStatus.LOADING).update(
                status=DeploymentStatus.SERVING, serving_since=timezone.now()
            )
            logger.info("serving.deployment_serving", extra={"deployment": deployment.served_name})
        elif deployment.status in (DeploymentStatus.STOPPED, DeploymentStatus.FAILED):
            if adapters:
                try:
                    adapter_unload(server.url, name=deployment.served_name)
                except EngineError as exc:
                    logger.warning("serving.unload_failed", extra={"deployment": deployment.pk, "error": str(exc)})
            Deployment.objects.filter(pk=deployment.pk).update(server=None)

    def _retire(self, server: ModelServer, process: _Process | None) -> None:
        if process is not None:
            signal_group(process.popen, signal.SIGTERM)
            try:
                process.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                signal_group(process.popen, signal.SIGKILL)
            self.processes.pop(server.pk, None)
        Deployment.objects.filter(server=server).update(server=None)
        server.delete()
        logger.info("serving.server_stopped", extra={"server": server.pk})

    def _fail(self, server: ModelServer, live: list[Deployment], message: str) -> None:
        process = self.processes.pop(server.pk, None)
        if process is not None:
            signal_group(process.popen, signal.SIGKILL)
        for deployment in live:
            _deployment_failed(deployment, message)
        ModelServer.objects.filter(pk=server.pk).update(error=message)

    def _log_path(self, server: ModelServer) -> Path:
        return self.logs / f"server-{server.pk}.log"


def _deployment_failed(deployment: Deployment, message: str) -> None:
    logger.error("serving.deployment_failed", extra={"deployment": deployment.served_name, "error": message[:500]})
    Deployment.objects.filter(pk=deployment.pk, status__in=LIVE_DEPLOYMENT).update(
        status=DeploymentStatus.FAILED, error=message
    )


def _release_stale(now: datetime) -> None:
    """Hand back the deployments of servers whose supervisor stopped writing its heartbeat."""
    stale = ModelServer.objects.filter(heartbeat_at__lt=now - STALE_AFTER)
    with transaction.atomic():
        released = Deployment.objects.filter(server__in=stale, status__in=LIVE_DEPLOYMENT).update(
            status=DeploymentStatus.PENDING, server=None
        )
        stale.delete()
    if released:
        logger.warning("serving.released", extra={"deployments": released})


def _free_port(first: int, *, taken: set[int]) -> int:
    for port in range(first, first + 1000):
        if port in taken:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((settings.LOGTUNE_SERVING_BIND, port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"No free port from {first} to {first + 999}.")


def supervise(*, engine: str | None = None, rounds: int | None = None) -> None:
    """Run the loop until SIGTERM or SIGINT (or for `rounds` rounds), then stop every server."""
    supervisor = Supervisor(engine=engine)
    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    logger.info("serving.supervisor_started", extra={"supervisor": supervisor.name, "engine": supervisor.engine})
    done = 0
    try:
        while not stopping and (rounds is None or done < rounds):
            try:
                supervisor.round()
            except Exception:  # a database hiccup must not take the servers down: try again next round
                logger.exception("serving.round_failed")
            done += 1
            time.sleep(ROUND_SECONDS)
    finally:
        supervisor.stop()
