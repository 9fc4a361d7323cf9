"""Serving in the browser, as a team would: deploy a fine-tune from its page, shadow one feature's calls, read the
route's figures and the judge's win rate, move a share to the fine-tune, roll back, and find the route's logs in the
explorer. The stand-in provider, model server and judge answer; a real worker stores the logs."""

import re
import time

import openai
import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tests.browser.test_datasets import shot
from tests.chat_stand_in import start_chat_stand_in
from tests.factories import DatasetFactory, FineTuneJobFactory, ModelEndpointFactory
from tests.proxy import conftest as proxy_world
from tests.proxy.conftest import PROVIDER_KEY
from tests.serving import conftest as serving_world
from tests.serving import test_proxy_routes
from training.models import Deployment, DeploymentStatus, Engine, FineTuneStatus, ModelServer, ProxyRoute, RouteCall

# The proxy's and serving's fixtures, shared with their own tests.
proxied, stand_in, editor_key = proxy_world.proxied, proxy_world.stand_in, proxy_world.editor_key
engine, serving_worker = serving_world.engine, test_proxy_routes.serving_worker

pytestmark = pytest.mark.django_db(transaction=True)


def prefers_the_fine_tune(body: dict) -> str:
    return "Verdict: A" if "<answer_a>\nft:" in body["messages"][-1]["content"] else "Verdict: B"


def test_a_team_deploys_shadows_reads_the_win_rate_promotes_and_rolls_back(
    owner,
    proxied,
    engine,
    editor_key,
    serving_worker,
    settings,
    log_in,
    page,
):
    job = FineTuneJobFactory(
        dataset=DatasetFactory(project=proxied), status=FineTuneStatus.SUCCEEDED, finished_at=timezone.now()
    )
    judge_server = start_chat_stand_in(answer=prefers_the_fine_tune)
    settings.LOGTUNE_ENDPOINT_HOSTS = ["127.0.0.1:*"]
    ModelEndpointFactory(project=proxied, name="judge", base_url=judge_server.url, model="judge")
    page.on("dialog", lambda dialog: dialog.accept())
    try:
        log_in("alice")
        page.goto(f"/p/acme/finetunes/{job.pk}/")
        deploy = page.locator("#deploy")
        expect(deploy).to_contain_text("No verdict")
        deploy.locator("input[name=name]").fill("support-v2")
        deploy.locator("[name=reason]").fill("read by hand: better on refunds")
        deploy.locator("button", has_text="Deploy anyway").click()
        expect(page.locator("#deploy .status")).to_have_text("Waiting for a model server")

        # What the serving supervisor does (tests/serving/test_supervisor.py): a server takes it and loads it.
        deployment = Deployment.objects.get()
        server = ModelServer.objects.create(supervisor="gpu-1:7", engine=Engine.VLLM, weights=job.model,
                                            url=engine.url, ready=True)  # fmt: skip
        engine.adapters[deployment.served_name] = str(job.adapter_dir)
        Deployment.objects.filter(pk=deployment.pk).update(status=DeploymentStatus.SERVING, server=server,
                                                          engine=Engine.VLLM)  # fmt: skip
        expect(page.locator("#deploy .status")).to_have_text("Serving", timeout=15_000)  # the section polls
        expect(page.locator("#deploy-snippet")).to_contain_text('model="ft:acme/support-v2"')
        shot(page, "finetune-deployed")

        page.locator("#deploy a", has_text="Serving").click()
        form = page.locator("#route-form")
        form.locator("input[name=name]").fill("checkout")
        form.locator("select[name=mode]").select_option("shadow")
        form.locator("input[name=match_metadata_key]").fill("feature")
        form.locator("input[name=match_metadata_value]").fill("checkout")
        form.locator("select[name=judge]").select_option(label="judge (judge)")
        form.locator("input[name=judge_sample]").fill("100")
        form.locator("button[type=submit]").click()
        expect(page.locator("h1")).to_have_text("Route checkout")
        expect(page.locator("#route-state")).to_contain_text("100% of the matching calls shadowed")

        sdk = openai.OpenAI(base_url=f"{page.url.split('/p/')[0]}/proxy/openai/v1", api_key=PROVIDER_KEY,
                            default_headers={"X-Logtune-Key": editor_key}, max_retries=0)  # fmt: skip
        from training.serving.router import serving_table_forget

        serving_table_forget()  # what each web process does within 5 seconds
        for _ in range(3):
            answer = sdk.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "Refund?"}],
                metadata={"feature": "checkout"},
            )
            assert answer.choices[0].message.content == "Hello from the stand-in."
        sdk.close()
        deadline = time.monotonic() + 60
        while RouteCall.objects.filter(verdict__isnull=False).count() < 3 and time.monotonic() < deadline:
            time.sleep(0.2)

        page.reload()
        figures = page.locator("#figures")
        expect(figures).to_contain_text("Calls3")
        expect(figures).to_contain_text("n=3: 3 wins, 0 ties, 0 losses")
        expect(page.locator("#calls tbody tr")).to_have_count(3)
        expect(page.locator("#calls tbody tr").first).to_contain_text("fine-tune wins")
        shot(page, "route")

        state = page.locator("#route-state")
        state.locator("button", has_text="Promote to 1% as a canary").click()
        expect(state).to_contain_text("1% of the matching calls answered by the fine-tune")
        state.locator("button", has_text="Promote to 5%").click()
        state.locator("button", has_text="Promote to 10%").click()
        expect(state).to_contain_text("10% of the matching calls answered by the fine-tune")
        route = ProxyRoute.objects.get()
        assert (route.mode, route.share, route.active) == ("canary", 0.1, True)

        state.locator("button", has_text="Roll back").click()
        expect(state).to_contain_text("rolled back")
        route.refresh_from_db()
        assert not route.active and route.share == 0

        page.goto("/p/acme/serving/")
        row = page.locator("#routes tbody tr", has_text="checkout")
        expect(row).to_contain_text("rolled back")
        expect(row).to_contain_text("n=3")
        shot(page, "serving")
        page.goto(f"/p/acme/serving/routes/{route.pk}/")
        page.locator("#route-logs").click()
        page.wait_for_url(re.compile(r"/p/acme/logs/\?tag=route"))
        expect(page.locator("#log-table tbody tr[data-id]")).to_have_count(6)  # 3 answers of each side
    finally:
        judge_server.close()
