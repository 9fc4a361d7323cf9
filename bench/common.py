"""What both benchmarks share: the bench database, the child processes' environment, and realistic logs.

The logs are varied OpenAI Chat Completions and Anthropic Messages envelopes of about 1 KB each
(plain chats, tool calls and their results, provider errors), with varied models, tags and
metadata and a unique `external_id`, generated from a seed so two runs send the same bytes.
"""

import contextlib
import http.client
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/logtune_bench"
PROJECT_SLUG = "bench"


# --- a server under test ------------------------------------------------------------------------------

SERVER_START_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def api_get(*, port: int, key: str) -> int:
    """The status of one `GET /api/v1/logs?limit=1` with `key`, on a connection of its own."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/api/v1/logs?limit=1", headers={"Authorization": f"Bearer {key}"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def wait_until_up(server: subprocess.Popen, *, port: int, key: str, log_path: Path) -> None:
    """Wait until the API answers, then warm every worker up (URLs, DRF, the key lookup)."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while True:
        if server.poll() is not None:
            raise SystemExit(f"gunicorn exited ({server.returncode}):\n{log_path.read_text()[-4000:]}")
        try:
            status = api_get(port=port, key=key)
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"gunicorn did not answer within {SERVER_START_TIMEOUT_S} s") from None
            time.sleep(0.2)
            continue
        if status != 200:
            raise SystemExit(f"GET /api/v1/logs answered {status}:\n{log_path.read_text()[-4000:]}")
        break
    for _ in range(20):
        api_get(port=port, key=key)


def gunicorn_start(*, port: int, options: Sequence[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """gunicorn serving `config.wsgi` on 127.0.0.1:`port` with `options` (workers, worker class, timeouts),
    logging to `log_path`. A session and process group of its own: Ctrl-C reaches the script only, which then
    stops the whole group with `server_stop`, workers included, whatever state the master is in."""
    command = [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{port}", *options]
    with log_path.open("wb") as log:
        return subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def server_stop(server: subprocess.Popen, *, grace: float = 10) -> None:
    """SIGTERM to the group (gunicorn's graceful stop), SIGKILL to it when that takes longer than `grace` + 5 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=grace + 5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait()


# --- the bench database and the Django processes --------------------------------------------------


def database_recreate(*, url: str) -> None:
    """Drop and create the database named in `url`, connecting to the server's `postgres` database.

    Only a database whose name contains "bench" is dropped: a mistyped --database-url must not
    empty a real one.
    """
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = str(conninfo_to_dict(url).get("dbname") or "")
    if "bench" not in name:
        raise SystemExit(f"Refusing to drop database {name!r}: the bench database's name must contain 'bench'.")
    with psycopg.connect(make_conninfo(url, dbname="postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def child_env(*, database_url: str, var_dir: Path) -> dict[str, str]:
    """Environment of the server and management commands: production settings on the bench database."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url,
        SECRET_KEY=secrets.token_urlsafe(50),
        DEBUG="0",
        LOGTUNE_VAR_DIR=str(var_dir),
        LOG_LEVEL="WARNING",
        DJANGO_SETTINGS_MODULE="config.settings",
    )
    return env


def manage(*args: str, env: dict[str, str]) -> str:
    """Run `manage.py` with `args` in a child process and return its stdout; exit with its stderr on failure."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result.stdout


def bench_django(*, name: str, database_url: str, reuse: bool) -> dict[str, str]:
    """A bench's Django: a new folder of local data, the database created again (unless `reuse`) and migrated, and
    Django set up in this process on it. Returns the environment for child processes."""
    import tempfile

    env = child_env(database_url=database_url, var_dir=Path(tempfile.mkdtemp(prefix=f"logtune-bench-{name}-")))
    env["ALLOWED_HOSTS"] = "testserver"
    if not reuse:
        database_recreate(url=database_url)
    manage("migrate", "--no-input", env=env)
    django_setup(env=env)
    return env


def bench_database_prepare(*, env: dict[str, str]) -> str:
    """Recreate and migrate the bench database; returns a new API key of the bench project."""
    database_recreate(url=env["DATABASE_URL"])
    manage("migrate", "--no-input", env=env)
    return manage("create_api_key", "--project", PROJECT_SLUG, "--name", "bench", env=env).strip().splitlines()[-1]


def django_setup(*, env: dict[str, str]) -> None:
    """Load Django in this process with the children's settings (for parse_log, the model and its table)."""
    os.environ.update(env)
    import django

    django.setup()


def bench_project_and_user():
    """The bench project and an owner of it (in this process, after `django_setup`), created once."""
    from django.contrib.auth import get_user_model

    from curation.models import Project, Role
    from curation.projects.services import membership_set

    project, _ = Project.objects.get_or_create(slug=PROJECT_SLUG, defaults={"name": "Bench"})
    user, _ = get_user_model().objects.get_or_create(username="bench-analyst")
    membership_set(project=project, user=user, role=Role.OWNER)
    return project, user


def code_version() -> str:
    """The commit measured, "-dirty" when the working tree has changes."""
    result = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    return result.stdout.strip() or "unknown"


class AutoAnalyze:
    """While in use, ANALYZE the log tables the way autovacuum would, when the server runs without it.

    Without statistics the planner takes a table of a million logs for a small one, and the duplicate
    check of every batch ends up reading the whole table: a benchmark would then measure a server set
    up unlike any production one. The rule is autovacuum's own: every `autovacuum_naptime`, a table
    with more than `threshold + scale_factor * rows` rows changed since its last analysis.
    """

    TABLES = ("curation_logentry", "curation_logtag")

    def __init__(self, *, url: str) -> None:
        self.url = url
        self.analyzed = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "AutoAnalyze":
        import psycopg

        with psycopg.connect(self.url) as conn:
            settings = dict(
                conn.execute(
                    "SELECT name, setting FROM pg_settings WHERE name IN "
                    "('autovacuum', 'autovacuum_naptime', 'autovacuum_analyze_threshold', "
                    "'autovacuum_analyze_scale_factor')"
                ).fetchall()
            )
        if settings["autovacuum"] == "off":
            naptime = settings["autovacuum_naptime"]
            print(f"  (autovacuum is off on this server: analysing the log tables as it would, every {naptime} s)")
            self._thread = threading.Thread(target=self._run, args=(settings,), name="auto-analyze", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self, settings: dict[str, str]) -> None:
        import psycopg

        naptime = float(settings["autovacuum_naptime"])
        threshold = float(settings["autovacuum_analyze_threshold"])
        scale = float(settings["autovacuum_analyze_scale_factor"])
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop.wait(naptime):
                for table in self.TABLES:
                    row = conn.execute(
                        "SELECT s.n_mod_since_analyze, greatest(c.reltuples, 0) FROM pg_stat_user_tables s "
                        "JOIN pg_class c ON c.oid = s.relid WHERE s.relname = %s",
                        [table],
                    ).fetchone()
                    if row and row[0] > threshold + scale * row[1]:
                        conn.execute(f"ANALYZE {table}")
                        self.analyzed += 1


def warn_if_busy() -> None:
    """The figures assume this machine is otherwise idle: say so when it is not."""
    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"  Warning: load average {load:.1f} before starting; other processes will lower the figures.")


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile: the smallest value with at least `share` of the values at or below it."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * share // 1))
    return ordered[int(rank) - 1]


def print_table(rows: list[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in rows)
    print()
    for name, value in rows:
        print(f"  {name:<{width}}  {value:>14}")
    print()


# --- realistic logs ----------------------------------------------------------------------------------

OPENAI_MODELS = ("gpt-4o-mini", "gpt-4o-2024-08-06", "gpt-4.1-mini", "gpt-4.1-nano", "o3-mini", "gpt-3.5-turbo")
OPENAI_PROVIDERS = ("openai", "openai", "openai", "azure", "openrouter")
ANTHROPIC_MODELS = ("claude-3-5-sonnet-20241022", "claude-3-5-haiku-20241022", "claude-sonnet-4-20250514")
TAGS = (
    "support", "billing", "refunds", "onboarding", "search", "summarise", "translate", "sql", "code-review",
    "extraction", "classification", "agent", "rag", "faq", "email-draft", "triage", "sales", "legal",
    "eval", "beta", "golden", "needs-review", "thumbs-up", "thumbs-down",
)  # fmt: skip
FEATURES = ("chat-widget", "ticket-triage", "doc-search", "email-assistant", "sql-helper", "report-builder")
REGIONS = ("eu-west-1", "us-east-1", "us-west-2", "ap-southeast-1")

SYSTEM_PROMPTS = (
    "You are a helpful support assistant for Acme Cloud. Answer briefly and link to the docs when you can.",
    "You are a senior data analyst. Write correct PostgreSQL and explain the query in one paragraph.",
    "You triage incoming tickets. Reply with the team, the priority and a one-line reason.",
    "You summarise documents for busy managers: five bullet points at most, no preamble.",
    "You are a friendly onboarding guide. Ask one question at a time and keep answers under 80 words.",
    "You translate product copy into the requested language, keeping placeholders such as {name} intact.",
)
TOPICS = (
    "a failed payment on the annual plan", "exporting invoices as CSV", "SSO with Okta", "rate limits on the API",
    "a refund for a duplicate charge", "moving a workspace to another region", "webhook retries",
    "the weekly usage report", "resetting two-factor authentication", "a slow dashboard query",
    "inviting teammates with viewer rights", "deleting personal data under GDPR",
)  # fmt: skip
QUESTIONS = (
    "Hi, I need help with {topic}. Order {order} shows the wrong amount and my manager is asking about it.",
    "Can you explain how {topic} works for a team of {count} people? We are on the Pro plan.",
    "Customer #{order} wrote in about {topic}. Draft a short, polite answer we can send today.",
    "Write a query that lists the {count} accounts most affected by {topic} over the last 30 days.",
    "Summarise this thread about {topic}: the customer tried twice, support replied once, still unresolved.",
    "Is there a limit related to {topic}? We hit an error around {count} requests per minute.",
)
ANSWERS = (
    "Thanks for reaching out. I checked order {order}: the amount includes tax for your billing country, "
    "which is why it differs from the list price.",
    "Here is what I found about {topic}. The setting lives under Workspace > Billing, and changes apply from "
    "the next invoice.",
    "Short answer: yes. For {count} seats you can enable it yourself; the docs page 'Admin guide' walks "
    "through each step with screenshots.",
    "I could not find a matching account for #{order}. Could you confirm the email address used at signup?",
    "SELECT account_id, count(*) AS events FROM usage WHERE created_at > now() - interval '30 days' "
    "GROUP BY account_id ORDER BY events DESC LIMIT {count};",
    "Priority: high. Team: payments. Reason: the customer was charged twice for order {order}.",
    "The limit is {count} requests per minute per key. Batching calls or asking for a higher tier both help.",
)
FOLLOW_UPS = (
    "Thanks! One more thing: can this be done through the API as well?",
    "That did not work, I still see the old value. What else can I try?",
    "Great, please also add a sentence about the refund timeline.",
)
TOOL_SCHEMAS = {
    "lookup_order": {"order_id": {"type": "string", "description": "Order number, e.g. 48213"}},
    "search_docs": {"query": {"type": "string"}, "limit": {"type": "integer", "minimum": 1}},
    "get_account": {"account_id": {"type": "string"}, "include_usage": {"type": "boolean"}},
}
TOOL_RESULTS = (
    '{"status": "paid", "amount": 129.0, "currency": "EUR", "items": 3, "refundable": true}',
    '{"results": [{"title": "Billing FAQ", "url": "https://docs.example.com/billing"}], "total": 1}',
    '{"plan": "pro", "seats": 25, "region": "eu-west-1", "usage": {"requests": 183204}}',
)
OPENAI_ERRORS = (
    (429, {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}),
    (500, {"error": {"message": "The server had an error while processing your request.", "type": "server_error"}}),
)
ANTHROPIC_ERRORS = (
    (529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    (429, {"type": "error", "error": {"type": "rate_limit_error", "message": "Number of request tokens exceeded"}}),
)
_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class LogMaker:
    """Makes the `index`-th log of a run. One instance per thread: it owns a seeded random generator.

    By default 60% OpenAI Chat Completions and 40% Anthropic Messages; with `mix`, half Chat Completions, a quarter
    OpenAI Responses API and a quarter Anthropic Messages."""

    def __init__(self, *, seed: int, mix: bool = False) -> None:
        self.rng = random.Random(seed)
        self.run = f"{seed:x}"
        self.mix = mix

    def log(self, index: int) -> dict:
        rng = self.rng
        kind = rng.random()
        if self.mix:
            log = self._openai() if kind < 0.5 else self._responses() if kind < 0.75 else self._anthropic()
        else:
            log = self._openai() if kind < 0.6 else self._anthropic()
        log["latency_ms"] = rng.randint(180, 9000)
        moment = _EPOCH + timedelta(seconds=rng.randint(0, 90 * 86400))
        if rng.random() < 0.8:  # otherwise the response's `created` (OpenAI) or the arrival time decides
            log["created_at"] = moment.isoformat().replace("+00:00", "Z")
        log["metadata"] = self._metadata()
        log["tags"] = rng.sample(TAGS, rng.choice((0, 1, 1, 2, 2, 3)))
        log["external_id"] = f"bench-{self.run}-{index:09d}"
        return log

    def _text(self, templates: Sequence[str]) -> str:
        rng = self.rng
        return rng.choice(templates).format(
            topic=rng.choice(TOPICS), order=rng.randint(10_000, 99_999), count=rng.choice((5, 10, 25, 50, 120))
        )

    def _metadata(self) -> dict:
        rng = self.rng
        metadata: dict = {
            "env": rng.choice(("prod", "prod", "prod", "staging")),
            "user_id": rng.randint(1, 50_000),
            "feature": rng.choice(FEATURES),
            "session_id": f"{rng.getrandbits(64):016x}",
        }
        if rng.random() < 0.5:
            metadata["region"] = rng.choice(REGIONS)
            metadata["app_version"] = f"2.{rng.randint(0, 20)}.{rng.randint(0, 9)}"
        return metadata

    def _conversation(self) -> list[tuple[str, str]]:
        """(role, text) turns before the answer: a question, sometimes an earlier exchange first."""
        turns = [("user", self._text(QUESTIONS))]
        if self.rng.random() < 0.3:
            turns += [("assistant", self._text(ANSWERS)), ("user", self.rng.choice(FOLLOW_UPS))]
        return turns

    def _tool(self) -> tuple[str, dict]:
        name = self.rng.choice(tuple(TOOL_SCHEMAS))
        return name, {"type": "object", "properties": TOOL_SCHEMAS[name], "required": [next(iter(TOOL_SCHEMAS[name]))]}

    def _arguments(self, name: str) -> dict:
        key = next(iter(TOOL_SCHEMAS[name]))
        return {key: str(self.rng.randint(10_000, 99_999))}

    # --- OpenAI Chat Completions --------------------------------------------------------------

    def _openai(self) -> dict:
        rng = self.rng
        model = rng.choice(OPENAI_MODELS)
        messages: list[dict] = [{"role": "system", "content": rng.choice(SYSTEM_PROMPTS)}]
        messages += [{"role": role, "content": text} for role, text in self._conversation()]
        request: dict = {"model": model, "messages": messages, "temperature": rng.choice((0, 0.2, 0.7))}
        kind = rng.random()
        if kind < 0.25:
            name, schema = self._tool()
            request["tools"] = [{"type": "function", "function": {"name": name, "parameters": schema}}]
            call_id = f"call_{rng.getrandbits(48):012x}"
            arguments = orjson_text(self._arguments(name))
            if kind < 0.12:  # the model asks for the tool: the answer is the call
                message: dict = {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
                    ],
                }
                finish = "tool_calls"
            else:  # the tool already ran: the request carries the call and its result
                messages.append(
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
                        ],
                    }
                )
                messages.append({"role": "tool", "tool_call_id": call_id, "content": rng.choice(TOOL_RESULTS)})
                message, finish = {"role": "assistant", "content": self._text(ANSWERS)}, "stop"
        else:
            message, finish = {"role": "assistant", "content": self._text(ANSWERS)}, "stop"
        log: dict = {"provider": rng.choice(OPENAI_PROVIDERS), "request": request}
        if rng.random() < 0.04:
            log["status_code"], log["response"] = rng.choice(OPENAI_ERRORS)
            return log
        prompt_tokens = rng.randint(40, 900)
        completion_tokens = rng.randint(5, 300)
        log["status_code"] = 200
        log["response"] = {
            "id": f"chatcmpl-{rng.getrandbits(64):016x}",
            "object": "chat.completion",
            "created": int(_EPOCH.timestamp()) + rng.randint(0, 90 * 86400),
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        return log

    # --- OpenAI Responses API -----------------------------------------------------------------

    def _responses(self) -> dict:
        rng = self.rng
        model = rng.choice(OPENAI_MODELS)
        request: dict = {"model": model, "instructions": rng.choice(SYSTEM_PROMPTS)}
        turns = self._conversation()
        request["input"] = turns[0][1] if len(turns) == 1 else [{"role": r, "content": t} for r, t in turns]
        prefix = f"{rng.getrandbits(64):016x}"
        output: list[dict] = []
        kind = rng.random()
        if kind < 0.12:  # the model asks for a tool: the answer is the call
            name, schema = self._tool()
            request["tools"] = [{"type": "function", "name": name, "parameters": schema, "strict": False}]
            output.append({
                "type": "function_call", "id": f"fc_{prefix}", "call_id": f"call_{prefix[:12]}", "name": name,
                "arguments": orjson_text(self._arguments(name)), "status": "completed",
            })  # fmt: skip
        else:
            text = {"type": "output_text", "text": self._text(ANSWERS), "annotations": []}
            output.append(
                {
                    "type": "message",
                    "id": f"msg_{prefix}",
                    "role": "assistant",
                    "status": "completed",
                    "content": [text],
                }
            )
        log: dict = {"provider": "openai", "request": request}
        if rng.random() < 0.04:
            log["status_code"], log["response"] = rng.choice(OPENAI_ERRORS)
            return log
        input_tokens, output_tokens = rng.randint(40, 900), rng.randint(5, 300)
        log["status_code"] = 200
        log["response"] = {
            "id": f"resp_{prefix}", "object": "response",
            "created_at": int(_EPOCH.timestamp()) + rng.randint(0, 90 * 86400), "model": model, "status": "completed",
            "output": output,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                      "total_tokens": input_tokens + output_tokens},
        }  # fmt: skip
        return log

    # --- Anthropic Messages -------------------------------------------------------------------

    def _anthropic(self) -> dict:
        rng = self.rng
        model = rng.choice(ANTHROPIC_MODELS)
        messages: list[dict] = [{"role": role, "content": text} for role, text in self._conversation()]
        request: dict = {"model": model, "max_tokens": rng.choice((512, 1024, 4096)), "messages": messages}
        if rng.random() < 0.8:
            request["system"] = rng.choice(SYSTEM_PROMPTS)
        content: list[dict] = [{"type": "text", "text": self._text(ANSWERS)}]
        stop_reason = "end_turn"
        kind = rng.random()
        if kind < 0.25:
            name, schema = self._tool()
            request["tools"] = [{"name": name, "description": f"{name.replace('_', ' ')}", "input_schema": schema}]
            use = {"type": "tool_use", "id": f"toolu_{rng.getrandbits(48):012x}", "name": name}
            use["input"] = self._arguments(name)
            if kind < 0.12:  # the model asks for the tool
                content, stop_reason = [{"type": "text", "text": "Let me look that up."}, use], "tool_use"
            else:  # the tool already ran
                messages.append({"role": "assistant", "content": [use]})
                result = {"type": "tool_result", "tool_use_id": use["id"], "content": rng.choice(TOOL_RESULTS)}
                messages.append({"role": "user", "content": [result]})
        log: dict = {"provider": "anthropic", "request": request}
        if rng.random() < 0.04:
            log["status_code"], log["response"] = rng.choice(ANTHROPIC_ERRORS)
            return log
        log["status_code"] = 200
        log["response"] = {
            "id": f"msg_{rng.getrandbits(64):016x}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop_reason,
            "usage": {"input_tokens": rng.randint(40, 1500), "output_tokens": rng.randint(5, 400)},
        }
        if rng.random() < 0.3:
            log["response"]["usage"]["cache_read_input_tokens"] = rng.randint(0, 1024)
        return log


def orjson_text(value: object) -> str:
    import orjson

    return orjson.dumps(value).decode()
