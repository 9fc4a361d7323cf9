"""Topics of a set of texts from their sentence embeddings: k-means clusters, labelled by class-based TF-IDF.

Pure functions, no Django: the topics job (curation/logs/topics/services.py) streams vectors through them, and the
tests plant clusters to recover. Vectors are unit length (curation/text/embeddings.py).

- `topic_count(n)`: the number of topics for n texts when nobody says, about sqrt(n / 2), from 5 to 60.
- `Sample`: a uniform random sample of rows fed chunk by chunk (memory stays at the sample's size).
- `centroids_fit(sample, k)`: MiniBatchKMeans on the sample; `nearest_centroid` then assigns every vector.
- `topic_terms(texts_by_topic)`: each topic's most distinctive terms: frequent in its texts, rare in the others'.
"""

import math
from collections.abc import Sequence

import numpy as np

K_MIN, K_MAX = 5, 60
# Vectors k-means is fitted on: 20,000 x 1.5 KB = 30 MB, plenty to place 60 centroids; every vector is then assigned.
SAMPLE_SIZE = 20_000
TERMS = 5
# Words: letters only, three or more (numbers, ids and most code punctuation say nothing of a topic).
WORD_PATTERN = r"(?u)\b[^\W\d_]{3,}\b"


def topic_count(n: int) -> int:
    """Topics for `n` texts: about sqrt(n / 2), bounded to K_MIN..K_MAX, and never more than the texts."""
    if n <= 0:
        return 0
    return min(n, max(K_MIN, min(K_MAX, round(math.sqrt(n / 2)))))


class Sample:
    """A uniform random sample of at most `size` rows of the chunks `add`ed: each row draws a random key and the
    rows of the `size` smallest keys are kept, in a buffer allocated once (so the sample is the same whatever the
    chunks' sizes, and memory stays at the sample and one chunk)."""

    def __init__(self, *, size: int = SAMPLE_SIZE, seed: int = 0) -> None:
        self.size = size
        self.rng = np.random.default_rng(seed)
        self.keys = np.empty(0)
        self.rows: np.ndarray | None = None
        self.count = 0  # rows of the buffer in use

    def add(self, rows: np.ndarray) -> None:
        keys = self.rng.random(len(rows))
        if self.rows is None:
            self.rows = np.empty((self.size, *rows.shape[1:]), dtype=rows.dtype)
            self.keys = np.empty(self.size)
        free = min(self.size - self.count, len(rows))  # fill the buffer first
        self.rows[self.count : self.count + free], self.keys[self.count : self.count + free] = rows[:free], keys[:free]
        self.count += free
        rows, keys = rows[free:], keys[free:]
        if not len(rows):
            return
        # Then the smallest keys of the buffer and the rest of the chunk: the chunk's winners take the losers' slots.
        merged = np.concatenate([self.keys, keys])
        kept = np.argpartition(merged, self.size)[: self.size]
        arriving = kept[kept >= self.size] - self.size
        leaving = np.setdiff1d(np.arange(self.size), kept[kept < self.size], assume_unique=True)
        self.rows[leaving], self.keys[leaving] = rows[arriving], keys[arriving]

    @property
    def vectors(self) -> np.ndarray:
        return np.empty((0, 0), dtype=np.float32) if self.rows is None else self.rows[: self.count]


def centroids_fit(sample: np.ndarray, k: int, *, seed: int = 0) -> np.ndarray:
    """k centroids of `sample` (rows x dimension) by mini-batch k-means: the best of 3 k-means++ starts, each on
    3,072 rows (k-means++ on the whole sample costs seconds at k = 60), then batches of 1,024 until the centroids
    settle (20 passes over the sample at most)."""
    from sklearn.cluster import MiniBatchKMeans
    from threadpoolctl import threadpool_limits

    k = min(k, len(sample))
    model = MiniBatchKMeans(
        n_clusters=k, random_state=seed, n_init=3, batch_size=1024, max_iter=20, compute_labels=False
    )
    # One thread: each step of mini-batch k-means is small, and OpenMP's threads waiting for each other on a shared
    # worker made the fit 5 to 10 times slower than one thread alone (bench/topics.py, two busy cores).
    with threadpool_limits(limits=1):
        model.fit(sample)
    return model.cluster_centers_.astype(np.float32)


def nearest_centroid(vectors: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """The index of each vector's nearest centroid (Euclidean, as k-means measures): the largest
    x·c - |c|²/2, without forming the differences."""
    if not len(vectors):
        return np.empty(0, dtype=np.int32)
    half_norms = 0.5 * np.einsum("ij,ij->i", centroids, centroids)
    return np.argmax(vectors @ centroids.T - half_norms, axis=1).astype(np.int32)


def topic_terms(texts_by_topic: Sequence[Sequence[str]], *, top: int = TERMS) -> list[list[str]]:
    """The `top` most distinctive terms of each topic's texts, best first (class-based TF-IDF, as BERTopic's).

    A term's weight in a topic is the share of the topic's texts that hold it, times log(1 + A / f), where f is
    the number of texts of all topics holding it and A the mean number of texts per topic: a term in most of one
    topic's texts and few others' ranks first. A term held by the other topics' texts at least half as often as by
    this one's is kept only to reach three terms. English stop words are left out; a term must appear in two texts."""
    from scipy.sparse import csr_matrix
    from sklearn.feature_extraction.text import CountVectorizer

    documents = [text for texts in texts_by_topic for text in texts]
    owner = np.repeat(np.arange(len(texts_by_topic)), [len(texts) for texts in texts_by_topic])
    empty: list[list[str]] = [[] for _ in texts_by_topic]
    if len(documents) < 2:
        return empty
    vectorizer = CountVectorizer(stop_words="english", token_pattern=WORD_PATTERN, binary=True, min_df=2)
    try:
        present = vectorizer.fit_transform(documents)  # texts x terms, 1 where the text holds the term
    except ValueError:  # no term left (stop words only, or every term in one text)
        return empty
    # Texts holding each term, per topic: a topics x texts indicator times the texts x terms matrix.
    shape = (len(texts_by_topic), len(documents))
    indicator = csr_matrix((np.ones(len(documents)), (owner, np.arange(len(documents)))), shape=shape)
    per_topic = np.asarray((indicator @ present).todense(), dtype=np.float64)
    texts = np.array([max(len(t), 1) for t in texts_by_topic], dtype=np.float64)[:, None]
    holding = per_topic.sum(axis=0)
    idf = np.log1p(texts.mean() / np.maximum(holding, 1))
    share = per_topic / texts
    scores = share * idf
    # The share of the other topics' texts holding each term: a term as common there as here says nothing of this
    # topic ("hello", "thanks"), whatever its score.
    others = (holding - per_topic) / np.maximum(len(documents) - texts, 1)
    words = vectorizer.get_feature_names_out()
    found = []
    for row in range(len(texts_by_topic)):
        ranked = [i for i in np.argsort(-scores[row], kind="stable") if per_topic[row, i] > 0]
        distinctive = [i for i in ranked if share[row, i] >= 2 * others[row, i]][:top]
        shared = [i for i in ranked if i not in distinctive][: max(0, 3 - len(distinctive))]
        chosen = sorted(distinctive + shared, key=lambda i: -scores[row, i])
        found.append([str(words[i]) for i in chosen])
    return found


def topic_label(terms: Sequence[str], number: int) -> str:
    """What a topic is called: its three best terms, or its number when it has none."""
    return " · ".join(terms[:3]) if terms else f"Topic {number}"
