"""Scores of logs: sent with logs, given through the API and on the log's page, filtered on, counted in the
explorer's facets; by owner, editor, viewer and outsider."""

import orjson
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from curation.logs.filters import logs_filter
from curation.logs.imports.run import import_job_run
from curation.logs.imports.services import import_job_create_local
from curation.logs.services import logs_ingest
from curation.models import AuditEvent, LogEntry, LogScore, ScoreSource
from tests.curation.samples import openai_log

pytestmark = pytest.mark.django_db


def chat(text: str, **fields: object) -> dict:
    return {"messages": [{"role": "user", "content": text}, {"role": "assistant", "content": "ok"}], **fields}


def scored(project, *scores_of_each: list[dict]) -> list[LogEntry]:
    """One log per list of scores, in order."""
    result = logs_ingest(project=project, items=[chat(f"q{i}", scores=s) for i, s in enumerate(scores_of_each)])
    assert not result.rejected, result.rejected
    return [LogEntry.objects.get(pk=stored.id) for stored in result.ids]


def matching(project, **params: object) -> list[int]:
    return sorted(logs_filter(project=project, params=params).values_list("pk", flat=True))


def post_scores(client, log_id: int, body: dict, project: str = "acme"):
    return client.post(f"/api/v1/logs/{log_id}/scores?project={project}", body, format="json")


# --- At ingest ------------------------------------------------------------------------------------------------


def test_scores_sent_with_logs_are_stored_as_api_scores(project):
    items = [
        openai_log(external_id="a", scores=[{"name": "thumbs", "value": "up"}, {"name": "quality", "value": 4}]),
        chat("b", scores=[{"name": "quality", "value": 2.5, "comment": "vague"}]),
        {"prompt": "2+2?", "completion": "4", "scores": [{"name": "judge-correct", "value": 1}]},
        chat("no scores"),
    ]

    result = logs_ingest(project=project, items=items)

    assert result.accepted == 4 and not result.rejected
    a, b, c, _ = (stored.id for stored in result.ids)
    rows = LogScore.objects.order_by("log_id", "id").values_list(
        "log_id", "name", "value_number", "value_text", "comment", "source", "project_id"
    )
    assert list(rows) == [
        (a, "thumbs", None, "up", "", ScoreSource.API, project.pk),
        (a, "quality", 4.0, None, "", ScoreSource.API, project.pk),
        (b, "quality", 2.5, None, "vague", ScoreSource.API, project.pk),
        (c, "judge-correct", 1.0, None, "", ScoreSource.API, project.pk),
    ]


def test_storing_scores_costs_the_same_statements_for_two_logs_as_for_a_hundred(project, postgres):
    # COPY on PostgreSQL; SQLite's bulk INSERT is split into batches by its limit on variables.
    def statements(count: int, offset: int) -> int:
        items = [chat(f"q{offset + i}", scores=[{"name": "quality", "value": i % 5}]) for i in range(count)]
        with CaptureQueriesContext(connection) as queries:
            logs_ingest(project=project, items=items)
        return len(queries.captured_queries)

    assert statements(2, 0) == statements(100, 2)
    assert LogScore.objects.count() == 102


def test_a_duplicate_does_not_add_its_scores_again(project):
    first = logs_ingest(
        project=project, items=[chat("a", external_id="e1", scores=[{"name": "thumbs", "value": "up"}])]
    )
    again = logs_ingest(
        project=project,
        items=[
            chat("a", external_id="e1", scores=[{"name": "thumbs", "value": "down"}]),
            chat("b", external_id="e2", scores=[{"name": "thumbs", "value": "up"}]),
            chat("b", external_id="e2", scores=[{"name": "thumbs", "value": "down"}]),  # a duplicate in the batch
        ],
    )

    assert (again.accepted, again.duplicates) == (1, 2)
    assert list(LogScore.objects.order_by("log_id").values_list("log__external_id", "value_text")) == [
        ("e1", "up"),
        ("e2", "up"),
    ]
    assert first.ids[0].id == again.ids[0].id


@pytest.mark.parametrize(
    ("scores", "error"),
    [
        ({"name": "thumbs"}, "scores: expected a list of score objects, got an object"),
        ([{"name": "thumbs", "value": True}], "scores.0.value: expected a number or a string, got a boolean"),
        ([{"name": "ok", "value": 1}, {"name": "Quality", "value": 4}], "scores.1.name: 1 to 50 lower-case"),
        ([{"value": 4}], "scores.0.name: required"),
        ([{"name": "quality", "value": ""}], "scores.0.value: a string of 1 to 100 characters"),
        ([{"name": "quality", "value": 4, "source": "judge"}], "scores.0.source: unknown field"),
        ([{"name": "quality", "value": 4, "comment": 5}], "scores.0.comment: expected a string"),
    ],
)
def test_bad_scores_reject_the_log_naming_the_field(project, scores, error):
    result = logs_ingest(project=project, items=[chat("x", scores=scores), chat("fine")])

    assert result.accepted == 1
    assert [r.index for r in result.rejected] == [0]
    assert result.rejected[0].error.startswith(error), result.rejected[0].error
    assert not LogScore.objects.exists()


def test_the_api_and_a_file_import_store_scores_and_keep_the_original_byte_for_byte(project, key_client, tmp_path):
    text = b'{"messages": [{"role": "user", "content": "hi"}], "scores": [{"name": "quality", "value": 5.0}]}'
    response = key_client.post("/api/v1/logs", data=text, content_type="application/json")
    assert response.status_code == 200, response.content
    log = LogEntry.objects.get(pk=response.json()["ids"][0]["id"])
    path = tmp_path / "logs.jsonl"
    path.write_bytes(orjson.dumps(chat("from a file", scores=[{"name": "thumbs", "value": "down"}])) + b"\n")

    import_job_run(job_id=import_job_create_local(project=project, path=path).pk, path=path)

    assert log.original.encode() == text
    assert sorted(LogScore.objects.values_list("name", "source")) == [("quality", "api"), ("thumbs", "api")]


def test_an_unreadable_log_keeps_the_scores_it_sent_in_a_usable_form(project):
    result = logs_ingest(
        project=project,
        items=[{"request": {"messages": "not a list"}, "scores": [{"name": "thumbs", "value": "down"}]}],
        keep_unreadable=True,
    )

    assert result.accepted == 1 and result.unreadable
    assert list(LogScore.objects.values_list("name", "value_text")) == [("thumbs", "down")]


# --- Filters ----------------------------------------------------------------------------------------------------


@pytest.fixture
def rated(project) -> dict[str, int]:
    logs = scored(
        project,
        [{"name": "quality", "value": 5}, {"name": "thumbs", "value": "up"}],
        [{"name": "quality", "value": 2}, {"name": "quality", "value": 4.5}],  # rated by two people
        [{"name": "quality", "value": 1}, {"name": "thumbs", "value": "down"}],
        [{"name": "helpfulness", "value": "4"}],  # a category that reads as a number
        [],
    )
    return dict(zip(["five", "two_and_four", "one", "text_four", "none"], (log.pk for log in logs), strict=True))


def test_a_log_matches_a_range_when_any_of_its_scores_of_that_name_does(project, rated):
    assert matching(project, score="quality>=4") == sorted([rated["five"], rated["two_and_four"]])
    assert matching(project, score="quality<2") == [rated["one"]]
    assert matching(project, score="quality<=2") == sorted([rated["two_and_four"], rated["one"]])
    assert matching(project, score="quality>4.5") == [rated["five"]]
    assert matching(project, score="quality>1e1") == []


def test_equality_matches_a_category_or_a_number_however_it_is_written(project, rated):
    assert matching(project, score="thumbs:up") == [rated["five"]]
    assert matching(project, score="thumbs=down") == [rated["one"]]
    assert matching(project, score="quality:5.0") == [rated["five"]]
    assert matching(project, score="helpfulness:4") == [rated["text_four"]]
    assert matching(project, score="thumbs:sideways") == []


def test_several_score_filters_all_apply_and_presence_and_absence_filter_by_name(project, rated):
    from django.http import QueryDict

    both = QueryDict("score=quality%3E%3D2&score=thumbs%3Aup")
    assert sorted(logs_filter(project=project, params=both).values_list("pk", flat=True)) == [rated["five"]]
    assert matching(project, has_score="thumbs") == sorted([rated["five"], rated["one"]])
    assert matching(project, has_score="thumbs,quality") == sorted([rated["five"], rated["one"]])
    assert matching(project, no_score="quality,thumbs") == sorted([rated["text_four"], rated["none"]])


def test_another_projects_scores_match_nothing_here(project, rated, outsider):
    other = outsider.projects.get()
    scored(other, [{"name": "quality", "value": 5}])

    assert matching(other, score="quality>=4") != [] and rated["five"] not in matching(other, score="quality>=4")
    assert len(matching(project, score="quality>=4")) == 2


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"score": "quality>=good"}, "score"),
        ({"score": "quality"}, "score"),
        ({"score": "Quality:5"}, "score"),
        ({"score": "quality=>"}, None),  # equality with the text ">": valid, matches nothing
        ({"has_score": "thumbs,"}, "has_score"),
        ({"no_score": "a b"}, "no_score"),
    ],
)
def test_a_bad_score_filter_is_a_400_naming_the_parameter(key_client, rated, params, field):
    response = key_client.get("/api/v1/logs", params)

    if field is None:
        assert response.status_code == 200 and response.json()["results"] == []
    else:
        assert response.status_code == 400, response.content
        assert list(response.json()) == [field]


def test_the_list_api_and_bulk_actions_take_the_score_filters(key_client, project, rated):
    listed = key_client.get("/api/v1/logs", {"score": ["quality>=4", "thumbs:up"]}).json()["results"]
    assert [row["id"] for row in listed] == [rated["five"]]

    for given in ("score=quality%3E%3D4", {"score": ["quality>=4"]}):
        response = key_client.post(
            "/api/v1/logs/bulk", {"action": "tag_add", "tags": ["good"], "filter": given}, format="json"
        )
        assert response.status_code == 200, response.content
    tagged = LogEntry.objects.filter(project=project, tags__name="good").values_list("pk", flat=True)
    assert sorted(tagged) == sorted([rated["five"], rated["two_and_four"]])


# --- The API ----------------------------------------------------------------------------------------------------


@pytest.fixture
def log(project) -> LogEntry:
    return scored(project, [])[0]


def test_an_editor_scores_a_log_one_score_or_several_and_reads_them_back(client_for, editor, key_client, log):
    one = post_scores(client_for(editor), log.pk, {"name": "thumbs", "value": "up", "comment": "clear"})
    several = post_scores(
        key_client,
        log.pk,
        {"scores": [{"name": "quality", "value": 4, "source": "judge"}, {"name": "quality", "value": 2}]},
    )

    assert one.status_code == 201, one.content
    assert several.status_code == 201, several.content
    listed = key_client.get(f"/api/v1/logs/{log.pk}/scores").json()["scores"]
    assert [(s["name"], s["value"], s["source"], s["comment"]) for s in listed] == [
        ("thumbs", "up", "user", "clear"),
        ("quality", 4.0, "judge", ""),
        ("quality", 2.0, "api", ""),
    ]
    assert listed[0]["created_by"] == "bob" and listed[1]["created_by"].startswith("API key lt_")
    detail = key_client.get(f"/api/v1/logs/{log.pk}").json()
    assert [s["id"] for s in detail["scores"]] == [s["id"] for s in listed]


def test_scoring_and_deleting_a_score_are_audited(key_client, log):
    added = post_scores(key_client, log.pk, {"name": "quality", "value": 3}).json()["scores"][0]

    deleted = key_client.delete(f"/api/v1/logs/{log.pk}/scores/{added['id']}")

    assert deleted.status_code == 204
    assert not LogScore.objects.exists()
    events = {e.action: e for e in AuditEvent.objects.filter(action__startswith="logs.score")}
    assert events["logs.score_add"].detail == {"log": log.pk, "scores": [{"id": added["id"], "name": "quality",
                                                                           "value": 3.0}]}  # fmt: skip
    assert events["logs.score_delete"].detail["name"] == "quality"
    assert events["logs.score_delete"].api_key is not None


def test_a_viewer_reads_scores_but_cannot_add_or_delete_them(client_for, viewer, key_client, log):
    added = post_scores(key_client, log.pk, {"name": "thumbs", "value": "up"}).json()["scores"][0]
    as_viewer = client_for(viewer)

    assert as_viewer.get(f"/api/v1/logs/{log.pk}/scores?project=acme").status_code == 200
    assert post_scores(as_viewer, log.pk, {"name": "thumbs", "value": "down"}).status_code == 403
    assert as_viewer.delete(f"/api/v1/logs/{log.pk}/scores/{added['id']}?project=acme").status_code == 403
    assert LogScore.objects.count() == 1


def test_another_projects_log_and_score_are_not_found(client_for, outsider, key_client, log):
    other_log = scored(outsider.projects.get(), [{"name": "thumbs", "value": "up"}])[0]
    other_score = other_log.scores.get()

    assert post_scores(key_client, other_log.pk, {"name": "thumbs", "value": "up"}).status_code == 404
    assert key_client.get(f"/api/v1/logs/{other_log.pk}/scores").status_code == 404
    assert key_client.delete(f"/api/v1/logs/{log.pk}/scores/{other_score.pk}").status_code == 404
    assert post_scores(client_for(outsider), log.pk, {"name": "thumbs", "value": "up"}).status_code == 404
    assert other_log.scores.count() == 1 and not log.scores.exists()


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"name": "thumbs"}, {"value": ["Required."]}),
        ({"value": 4}, {"name": ["Required."]}),
        ({"name": "Bad Name", "value": 4}, "name"),
        ({"name": "quality", "value": True}, {"value": ["Expected a number or a string, got a boolean."]}),
        ({"name": "quality", "value": None}, "value"),
        ({"name": "quality", "value": "x" * 101}, "value"),
        ({"name": "quality", "value": 4, "source": "robot"}, "source"),
        ({"name": "quality", "value": 4, "comment": 7}, "comment"),
        ({"name": "quality", "value": 4, "scores": [{"name": "a", "value": 1}]}, "scores"),
        ({"scores": []}, "scores"),
        ({"scores": [{"name": "a", "value": 1}, {"name": "b"}]}, {"scores": {"1": {"value": ["Required."]}}}),
        ({}, {"name": ["Required."]}),
    ],
)
def test_a_bad_score_is_a_400_naming_the_field_and_stores_nothing(key_client, log, body, errors):
    response = post_scores(key_client, log.pk, body)

    assert response.status_code == 400, response.content
    if isinstance(errors, str):
        assert list(response.json()) == [errors], response.json()
    else:
        assert response.json() == errors
    assert not LogScore.objects.exists()


def test_deleting_a_log_deletes_its_scores(key_client, log):
    post_scores(key_client, log.pk, {"name": "thumbs", "value": "up"})

    assert key_client.delete(f"/api/v1/logs/{log.pk}").status_code == 200
    assert not LogScore.objects.exists()


# --- Pages --------------------------------------------------------------------------------------------------------


def test_the_facets_show_score_names_with_averages_and_category_counts_each_a_link(client, owner, project, rated):
    client.force_login(owner)

    page = client.get("/p/acme/logs/facets/?score=quality%3E%3D1").content.decode()

    facet = page[page.index('id="facet-score"') :]
    assert "quality" in facet and "avg 3.13" in facet  # 5, 2, 4.5 and 1 (3.125): of the logs the filter matches
    assert "has_score=quality" in facet
    assert "score=quality%3E%3D1&amp;score=thumbs%3Aup" in facet
    assert "helpfulness" not in facet  # its log has no quality score


def test_an_editor_scores_a_log_on_its_page_and_a_viewer_sees_the_scores_without_the_form(client, editor, viewer, log):
    client.force_login(editor)
    url = f"/p/acme/logs/{log.pk}/scores/"

    thumbs = client.post(url, {"name": "thumbs", "value": "up"}, HTTP_HX_REQUEST="true")
    rated = client.post(url, {"name": "quality", "value": "4", "comment": "good enough"})
    bad = client.post(url, {"name": "Quality", "value": "4"}, HTTP_HX_REQUEST="true")

    assert thumbs.status_code == 200 and 'id="scores"' in thumbs.content.decode()
    assert rated.status_code == 302
    assert "Not added: name: 1 to 50 lower-case" in bad.content.decode()
    assert list(log.scores.values_list("name", "value_number", "value_text", "source", "created_by")) == [
        ("thumbs", None, "up", "user", editor.pk),
        ("quality", 4.0, None, "user", editor.pk),
    ]
    client.force_login(viewer)
    page = client.get(f"/p/acme/logs/{log.pk}/").content.decode()
    assert "good enough" in page and "thumbs" in page
    assert 'id="score-form"' not in page
    assert client.post(url, {"name": "thumbs", "value": "down"}).status_code == 403
    score = log.scores.first()
    assert client.post(f"/p/acme/logs/{log.pk}/scores/{score.pk}/delete").status_code == 403


def test_the_explorer_filters_by_score_and_explains_a_bad_one(client, viewer, rated):
    client.force_login(viewer)

    good = client.get("/p/acme/logs/?score=quality%3E%3D4&score=thumbs%3Aup").content.decode()
    bad = client.get("/p/acme/logs/?score=quality%3E%3Dgreat").content.decode()

    assert f"/p/acme/logs/{rated['five']}/?" in good
    assert f"/p/acme/logs/{rated['two_and_four']}/?" not in good
    assert 'value="quality&gt;=4"' in good and 'value="thumbs:up"' in good  # kept in the filter form
    errors = bad.split('id="filter-errors"')[1].split("</div>")[0]
    assert "Score:" in errors and "compares with a number" in errors
