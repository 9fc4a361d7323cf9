"""Search by meaning: `about=` (or `q=about:…`) ranks the project's indexed logs by how close their embedding is to
the embedding of a few words ("math questions", "billing complaints"), whatever words the logs use.

The query's words are embedded with the same model as the logs (curation.text.embeddings). That is the one
embedding a web request computes: a few words, a few milliseconds once the model is loaded (about a second and a
few hundred MB, the first time in a process), and kept in the cache so the table, its facets, dashboard and next
pages embed them once. The logs' embeddings are only read, never computed here: logs not indexed yet are not
found, and the explorer says how many are indexed.

Relevance is the cosine similarity of the two vectors. A short query is compared with a whole conversation, so
scores are lower than between two logs: 0.2 to 0.5 for logs on the topic, under 0.15 for unrelated ones. Logs at
least `min_relevance` (default RELEVANCE_DEFAULT) alike are kept, the best RANKED_MAX of them, best first.
"""

import contextlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from django.core.cache import cache
from django.core.exceptions import ValidationError

from curation.logs.similar.matrix import index_matrix, index_state
from curation.models import Project
from curation.text.embeddings import text_hash

# The prefix that makes the free-text box search by meaning: `about:math questions`.
PREFIX = "about:"
TEXT_MAX = 500  # characters of a query: the model reads about 1,000 characters of English at most
RELEVANCE_MIN, RELEVANCE_DEFAULT = 0.0, 0.2
RANKED_MAX = 10_000
CACHE_S = 300  # a ranking is kept this long for the same index state: pages, facets, dashboard ask again
VECTOR_CACHE_S = 24 * 3600  # a query's embedding depends on its text only


@dataclass(slots=True)
class Ranking:
    """The indexed logs at least `min_relevance` alike to `text`, best first (ties: the newest log first)."""

    text: str
    min_relevance: float
    searched: int  # logs in the index compared
    ids: list[int] = field(default_factory=list)
    scores: dict[int, float] = field(default_factory=dict)

    def position(self) -> dict[int, int]:
        return {pk: index for index, pk in enumerate(self.ids)}


def about_text(params: Mapping) -> str:
    """The query of a filter's search by meaning: `about`, else `q` when it starts with `about:`; '' for none."""
    about = str(params.get("about") or "").strip()
    if about:
        return about
    q = str(params.get("q") or "").strip()
    return q[len(PREFIX) :].strip() if q.lower().startswith(PREFIX) else ""


def query_clean(text: str) -> str:
    """The query as it is embedded: white space collapsed; a ValidationError naming `about` when it is too long."""
    cleaned = " ".join(text.split())
    if len(cleaned) > TEXT_MAX:
        raise ValidationError({"about": f"At most {TEXT_MAX} characters (got {len(cleaned)})."})
    if not re.search(r"\w", cleaned):
        raise ValidationError({"about": "Write a few words about what to find: about:math questions."})
    return cleaned


def query_vector(text: str) -> np.ndarray:
    """The unit embedding of `text` (cleaned), from the cache or computed now with the process's model."""
    key = f"logtune:about-vector:{text_hash(text)}"
    with contextlib.suppress(Exception):  # a cache that is down only costs the embedding
        cached = cache.get(key)
        if cached is not None:
            return np.frombuffer(cached, dtype="<f4")
    from curation.text.embeddings import embed

    vector = embed([text])[0].astype("<f4")
    with contextlib.suppress(Exception):
        cache.set(key, vector.tobytes(), VECTOR_CACHE_S)
    return vector


def logs_about(*, project: Project, text: str, min_relevance: float = RELEVANCE_DEFAULT) -> Ranking:
    """The ranking of the project's indexed logs by meaning (see the module's docstring). Raises ValidationError
    (on `about`) when the project has no indexed log: nothing could be found, and saying nothing would mislead."""
    cleaned = query_clean(text)
    state = index_state(project=project)
    if not state.size:
        raise ValidationError(
            {
                "about": "No log of this project is indexed yet, so none can be found by meaning: index the logs "
                "(Index logs in the explorer, or POST /api/v1/log-embeddings), then search again."
            }
        )
    key = f"logtune:about:{project.pk}:{text_hash(cleaned)}:{min_relevance:.4f}:{state.key}"
    with contextlib.suppress(Exception):
        cached = cache.get(key)
        if cached is not None:
            return cached
    query = query_vector(cleaned)
    matrix = index_matrix(project=project, state=state)
    # Rounded: copies differ in the last bits of float32; equal scores then go to the newer log.
    scores = np.round(matrix.vectors @ query, 4)
    kept = np.flatnonzero(scores >= min_relevance)
    if len(kept) > RANKED_MAX:
        kept = kept[np.argpartition(-scores[kept], RANKED_MAX - 1)[:RANKED_MAX]]
    ids = np.asarray(matrix.ids[kept])
    order = np.lexsort((-ids, -scores[kept]))[:RANKED_MAX]
    best = [(float(scores[kept][row]), int(ids[row])) for row in order.tolist()]
    searched = len(matrix.ids)
    ranking = Ranking(
        text=cleaned,
        min_relevance=min_relevance,
        searched=searched,
        ids=[pk for _, pk in best],
        scores={pk: score for score, pk in best},
    )
    with contextlib.suppress(Exception):
        cache.set(key, ranking, CACHE_S)
    return ranking


def ranking_of(*, project: Project, params: Mapping) -> Ranking | None:
    """The ranking a filter's parameters ask for (`about`, `min_relevance`), or None when they search by no
    meaning. Parameters are checked as the filter checks them."""
    text = about_text(params)
    if not text:
        return None
    return logs_about(project=project, text=text, min_relevance=relevance_param(params))


def relevance_param(params: Mapping) -> float:
    raw = str(params.get("min_relevance") or "").strip()
    if not raw:
        return RELEVANCE_DEFAULT
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not RELEVANCE_MIN <= value <= 1:
        raise ValidationError({"min_relevance": f"A number from {RELEVANCE_MIN:g} to 1 (got '{raw}')."})
    return value
