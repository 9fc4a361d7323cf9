"""Search by meaning: `about=` (or `q=about:`) embeds a few words and ranks the project's indexed logs by how close
they are, combined with every other filter, in the API, the explorer, its bulk actions and the log page's
Previous / Next. The real bundled model embeds both the logs and the words (loaded once per test process)."""

from urllib.parse import quote

import pytest

from curation.logs.filters import logs_filter
from curation.logs.similar.about import RELEVANCE_DEFAULT, logs_about
from curation.logs.similar.services import log_embedding_job_create, project_embed_logs
from curation.models import LogEntry, LogTag
from tests.curation.test_similar import ingest

MATH = [
    ("What is 17 times 23?", "17 times 23 is 391.", "gpt-4o"),
    ("Solve x^2 - 5x + 6 = 0", "The roots are x = 2 and x = 3.", "gpt-4o-mini"),
    ("A train travels 120 km in 1.5 hours. What is its average speed?", "80 km/h.", "gpt-4o"),
    ("Is 97 a prime number?", "Yes, 97 is prime.", "gpt-4o-mini"),
]
OTHER = [
    ("What are good places to visit in Lisbon?", "Alfama, Belem tower, LX Factory.", "gpt-4o"),
    ("I can't log in to my account, reset password", "Click 'Forgot password' on the login page.", "gpt-4o"),
    ("How long should I boil an egg for a soft yolk?", "About 6 minutes.", "gpt-4o-mini"),
    ("My invoice shows a double charge for November", "I've refunded the duplicate charge.", "gpt-4o"),
]
QUERY = "math questions"
LOGS = "/api/v1/logs"


@pytest.fixture
def logs(project) -> dict[str, list[int]]:
    """Four math logs and four others, all indexed."""
    ids = ingest(project, MATH + OTHER)
    project_embed_logs(job_id=log_embedding_job_create(project=project).pk)
    return {"math": ids[: len(MATH)], "other": ids[len(MATH) :]}


def _ids(body: dict) -> list[int]:
    return [row["id"] for row in body["results"]]


def test_the_words_find_the_logs_about_them_best_first_whatever_words_they_use(project, logs, key_client):
    body = key_client.get(LOGS, {"about": QUERY}).json()

    assert sorted(_ids(body)) == sorted(logs["math"])  # none of them says "math"
    relevances = [row["relevance"] for row in body["results"]]
    assert relevances == sorted(relevances, reverse=True) and min(relevances) >= RELEVANCE_DEFAULT
    ranking = logs_about(project=project, text=QUERY)
    assert _ids(body) == ranking.ids and ranking.searched == 8


def test_the_free_text_box_searches_by_meaning_with_the_about_prefix(logs, key_client):
    by_param = key_client.get(LOGS, {"about": QUERY}).json()
    by_prefix = key_client.get(LOGS, {"q": f"about: {QUERY}"}).json()

    assert _ids(by_prefix) == _ids(by_param)
    assert key_client.get(LOGS, {"q": "about:x", "about": QUERY}).status_code == 400


def test_a_search_by_meaning_combines_with_the_other_filters(project, logs, key_client):
    body = key_client.get(LOGS, {"about": QUERY, "model": "gpt-4o-mini"}).json()

    wanted = set(LogEntry.objects.filter(pk__in=logs["math"], model="gpt-4o-mini").values_list("pk", flat=True))
    assert set(_ids(body)) == wanted and len(wanted) == 2


def test_min_relevance_widens_or_narrows_the_ranking(logs, key_client):
    everything = key_client.get(LOGS, {"about": QUERY, "min_relevance": "0"}).json()
    narrow = key_client.get(LOGS, {"about": QUERY, "min_relevance": "0.99"}).json()

    assert len(_ids(everything)) >= 6  # unrelated logs too, below the math ones
    assert set(_ids(everything)[:4]) == set(logs["math"])
    assert _ids(narrow) == []


def test_logs_not_indexed_are_not_found_and_an_unindexed_project_is_told_so(project, key_client):
    ingest(project, MATH)

    response = key_client.get(LOGS, {"about": QUERY})

    assert response.status_code == 400
    assert "No log of this project is indexed yet" in response.json()["about"][0]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"min_relevance": "0.3"}, "min_relevance"),
        ({"about": QUERY, "min_relevance": "1.5"}, "min_relevance"),
        ({"about": QUERY, "min_relevance": "much"}, "min_relevance"),
        ({"about": "x" * 501}, "about"),
        ({"about": "?!"}, "about"),
        ({"sort": "relevance"}, "sort"),
    ],
)
def test_bad_parameters_are_refused_naming_the_field(logs, key_client, params, field):
    response = key_client.get(LOGS, params)

    assert response.status_code == 400 and field in response.json(), response.json()


def test_pages_of_a_ranking_continue_it(logs, key_client):
    whole = _ids(key_client.get(LOGS, {"about": QUERY, "min_relevance": "0"}).json())
    seen: list[int] = []
    params = {"about": QUERY, "min_relevance": "0", "limit": 3}
    while True:
        body = key_client.get(LOGS, params).json()
        seen += _ids(body)
        if not body["next_cursor"]:
            break
        params["cursor"] = body["next_cursor"]

    assert seen == whole and len(seen) >= 6


def test_another_sort_keeps_the_relevance_of_each_log(logs, key_client):
    body = key_client.get(LOGS, {"about": QUERY, "sort": "-time"}).json()

    assert _ids(body) == sorted(logs["math"], reverse=True)
    assert all(row["relevance"] >= RELEVANCE_DEFAULT for row in body["results"])
    assert key_client.get(LOGS).json()["results"][0]["relevance"] is None


def test_a_bulk_action_by_a_search_by_meaning_acts_on_its_logs_only(project, logs, key_client):
    response = key_client.post(
        f"{LOGS}/bulk",
        {"action": "tag_add", "tags": ["maths"], "filter": f"about={quote(QUERY)}"},
        format="json",
    )

    assert response.status_code in (200, 202), response.json()
    tagged = set(LogTag.objects.filter(tag__name="maths").values_list("log_id", flat=True))
    assert tagged == set(logs["math"])


def test_the_explorer_ranks_by_meaning_and_the_log_page_steps_through_the_ranking(project, logs, owner, client):
    client.force_login(owner)
    ranking = logs_about(project=project, text=QUERY)
    url = f"/p/{project.slug}/logs/"

    page = client.get(url, {"q": f"about:{QUERY}"})

    html = page.content.decode()
    assert page.status_code == 200 and 'id="about-line"' in html
    assert [log.pk for log, _, _ in page.context["rows"]] == ranking.ids
    assert "Relevance ↓" in html
    first, second = ranking.ids[:2]
    detail = client.get(f"{url}{first}/", {"q": f"about:{QUERY}"})
    assert detail.context["newer_url"] is None
    assert detail.context["older_url"].startswith(f"{url}{second}/?")
    assert 'id="relevance"' in detail.content.decode()


def test_the_log_page_steps_in_the_order_the_list_was_sorted(project, owner, client):
    ids = ingest(project, OTHER)
    tokens = {pk: 100 + (pk * 37) % 11 for pk in ids}
    for pk, count in tokens.items():
        LogEntry.objects.filter(pk=pk).update(total_tokens=count)
    LogEntry.objects.filter(pk=ids[0]).update(total_tokens=None)
    order = [*sorted(ids[1:], key=lambda pk: (-tokens[pk], -pk)), ids[0]]
    client.force_login(owner)

    walked = [order[0]]
    while True:
        detail = client.get(f"/p/{project.slug}/logs/{walked[-1]}/", {"sort": "-tokens"})
        following = detail.context["older_url"]
        if not following:
            break
        walked.append(int(following.split("/logs/")[1].split("/")[0]))
        assert "sort=-tokens" in following

    assert walked == order
    back = client.get(f"/p/{project.slug}/logs/{order[-1]}/", {"sort": "-tokens"}).context["newer_url"]
    assert back.startswith(f"/p/{project.slug}/logs/{order[-2]}/")


def test_the_filter_language_takes_about_as_everywhere(project, logs):
    found = logs_filter(project=project, params={"about": QUERY, "tag_none": "nothing"})

    assert set(found.values_list("pk", flat=True)) == set(logs["math"])


def test_searches_map_one_file_of_the_index_rewritten_when_the_index_changes(project, logs, settings, monkeypatch):
    from curation.logs.similar import matrix

    first = logs_about(project=project, text=QUERY)
    files = list(settings.LOGTUNE_INDEX_DIR.glob(f"logs-{project.pk}-*.bin"))
    assert len(files) == 1 and files[0].stat().st_size == 8 * (8 + 4 * 384)

    def no_database(project):  # a second search with another text reads the file, not the database
        raise AssertionError("read the database")

    monkeypatch.setattr(matrix, "_from_database", no_database)
    assert logs_about(project=project, text=f"{QUERY} please").searched == 8
    monkeypatch.undo()

    ingest(project, [("What is 12 squared?", "144.", "gpt-4o")])
    project_embed_logs(job_id=log_embedding_job_create(project=project).pk)
    again = logs_about(project=project, text=QUERY)

    assert again.searched == 9 and set(first.ids) <= set(again.ids)
    assert [path.name for path in settings.LOGTUNE_INDEX_DIR.glob(f"logs-{project.pk}-*.bin")] != [files[0].name]
    assert len(list(settings.LOGTUNE_INDEX_DIR.glob(f"logs-{project.pk}-*.bin"))) == 1


def test_a_damaged_file_is_read_again_from_the_database(project, logs, settings):
    logs_about(project=project, text=QUERY)
    (path,) = settings.LOGTUNE_INDEX_DIR.glob(f"logs-{project.pk}-*.bin")
    path.write_bytes(b"not vectors")

    assert logs_about(project=project, text="arithmetic").searched == 8
    assert path.stat().st_size == 8 * (8 + 4 * 384)
