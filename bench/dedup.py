"""Near-duplicate benchmark: embed 50,000 chat entries with the bundled model and cluster them.

    .venv/bin/python bench/dedup.py                    # 50,000 entries, threshold 0.9, 2 threads
    .venv/bin/python bench/dedup.py --entries 5000     # smaller, a minute or so
    .venv/bin/python bench/dedup.py --skip-embed       # only the clustering of random unit vectors

The entries are OpenAI-shaped chats (system prompt, question, answer, sometimes a follow-up) made
from intents with three phrasings each and many slot values. A known share of them are duplicates of
an earlier entry, of three kinds: exact copies, copies with small edits (case, punctuation, a typo,
another order number, a greeting) and paraphrases (another phrasing of the same question, the same
answer). Measured, in this process, for both linkages of `near_duplicate_clusters` (leader and single):
  - clustering alone on `--entries` random unit vectors with planted noisy copies (time, memory), and
    on the same vectors with `--copies` of them made exact copies of one (the worst case of one text
    sent thousands of times);
  - loading the model, and embedding the entries' texts (`text_of_conversation`): texts/s;
  - clustering the embeddings at `--threshold` (time, memory), then the clusters' pair precision and
    recall against the known duplicates at several thresholds, each kind's recall, and what
    keep-one-per-cluster would do: distinct conversations it would leave no entry of, copies it would miss;
  - "more like this": one `most_similar` query over all the vectors.
`--vectors FILE.npy` keeps the embeddings, so the clustering can be measured again without them.
Memory is the peak resident set size during a phase, above what the process held when it began.
The embedding speed of each precision, against sentence-transformers on these same texts, is bench/embed.py's.
"""

import argparse
import os
import random
import resource
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from common import code_version, print_table, warn_if_busy

SYSTEM_PROMPTS = (
    "You are a helpful support assistant for Acme Cloud. Answer briefly and link to the docs when you can.",
    "You are a senior data analyst. Write correct PostgreSQL and explain the query in one paragraph.",
    "You triage incoming tickets. Reply with the team, the priority and a one-line reason.",
)
# Each intent: three phrasings of one question, and the answers it gets.
INTENTS = (
    (
        (
            "How do I {action} {thing} in {product}? {context}",
            "What are the steps to {action} {thing} using {product}? {context}",
            "{context} Can you walk me through how to {action} {thing} in {product}?",
        ),
        (
            "Open {product}, go to Settings > {area} and choose '{action} {thing}'. It takes effect within {count} "
            "minutes.",
            "You can {action} {thing} from the {area} page of {product}; admins can also do it through the API.",
        ),
    ),
    (
        (
            "I was charged twice for order {order} on the {plan} plan. {context}",
            "Order {order} shows two charges on my card for the {plan} plan. {context}",
            "{context} There is a double charge for order {order} ({plan} plan), can you fix it?",
        ),
        (
            "Sorry about that. I refunded the second charge for order {order}; it shows on your statement within "
            "{count} business days.",
            "I can see two payments for order {order}. The duplicate is refunded automatically after {count} days.",
        ),
    ),
    (
        (
            "Write a SQL query that returns the {count} {entities} with the most {metric} last {period}.",
            "I need a PostgreSQL query listing the top {count} {entities} by {metric} over the last {period}.",
            "Give me SQL for the {count} {entities} that had the highest {metric} in the past {period}.",
        ),
        (
            "SELECT {entity}_id, sum({metric_column}) AS total FROM events WHERE created_at > now() - interval "
            "'1 {period}' GROUP BY {entity}_id ORDER BY total DESC LIMIT {count};",
            "This ranks {entities} by {metric}: SELECT {entity}_id, count(*) FROM {entity}_events WHERE ts > "
            "now() - interval '1 {period}' GROUP BY 1 ORDER BY 2 DESC LIMIT {count};",
        ),
    ),
    (
        (
            "Why does {product} return error {error} when I {action} {thing}? {context}",
            "I keep getting error {error} from {product} while trying to {action} {thing}. {context}",
            "{context} {product} fails with {error} every time I {action} {thing}. What does it mean?",
        ),
        (
            "Error {error} means the request was refused by {area}. Check that your key has the '{thing}' scope.",
            "{error} is returned when {thing} is locked by another job; wait {count} seconds and retry.",
        ),
    ),
    (
        (
            "Summarise this ticket: the customer of {product} reports that {thing} broke after {event}. {context}",
            "Give me a short summary of this ticket: {product} user says {thing} stopped working after {event}. "
            "{context}",
            "{context} Summary please: since {event}, {thing} no longer works for a {product} customer.",
        ),
        (
            "- {thing} broken since {event}\n- affects one {product} workspace\n- next step: escalate to {area}",
            "Customer reports {thing} failing after {event}. Impact: medium. Owner: the {area} team.",
        ),
    ),
    (
        (
            "Translate into {language}: 'Your {thing} will be ready in {count} days.'",
            "Please translate this to {language}: 'Your {thing} will be ready in {count} days.'",
            "Can you put this sentence into {language}? 'Your {thing} will be ready in {count} days.'",
        ),
        (
            "[{language}] Your {thing} will be ready in {count} days (translated, placeholders kept).",
            "Here is the {language} version, with {count} kept as a number: 'Your {thing} ... {count} ...'.",
        ),
    ),
    (
        (
            "Is there a limit on {thing} for the {plan} plan? We are at {count} per {period}. {context}",
            "What is the maximum {thing} allowed on {plan}? Our usage is about {count} each {period}. {context}",
            "{context} Do {plan} accounts have a cap on {thing}? We reach roughly {count} per {period}.",
        ),
        (
            "The {plan} plan allows {count} {thing} per {period}; above that, requests answer 429 until the next "
            "window.",
            "There is no hard cap on {thing} for {plan}, but past {count} per {period} we ask you to batch.",
        ),
    ),
    (
        (
            "Draft a reply to a customer who is unhappy that {thing} in {product} changed after {event}.",
            "Write a polite answer for a customer annoyed that {product} changed {thing} following {event}.",
            "Help me answer an upset customer: after {event}, {thing} works differently in {product}.",
        ),
        (
            "Hi, thank you for telling us. After {event} we changed {thing} in {product} to make it faster; you "
            "can switch back under {area}.",
            "Thanks for the feedback on {thing}. The change came with {event}; I have shared your note with the "
            "{area} team.",
        ),
    ),
)
SLOTS = {
    "action": ("export", "delete", "rename", "archive", "share", "duplicate", "restore", "schedule", "lock",
               "import", "merge", "audit", "encrypt", "tag", "move"),
    "thing": ("invoices", "a workspace", "webhooks", "API keys", "the audit log", "dashboards", "user groups",
              "saved searches", "billing contacts", "SSO settings", "custom fields", "email templates",
              "data retention rules", "scheduled reports", "a project", "uploaded files", "comments", "labels"),
    "product": ("Acme Cloud", "Acme Analytics", "Acme Mail", "Acme Desk", "Acme Forms", "Acme Pay", "Acme CRM"),
    "context": ("We are a team of 12 in Berlin.", "This is urgent for a board meeting tomorrow.",
                "I am new to the admin console.", "We migrated from a competitor last week.",
                "Our IT team only allows read-only tokens.", "It worked fine until yesterday.",
                "We are on a trial account.", "My manager asked me to sort this out today.",
                "We use Okta for single sign-on.", "The customer is in Japan.", "We have about 400 users.",
                "I tried the docs but got lost.", "This happens only on mobile.", "We are a nonprofit.", ""),
    "area": ("Billing", "Security", "Integrations", "Workspace", "Notifications", "Data", "Members"),
    "plan": ("Free", "Starter", "Pro", "Business", "Enterprise"),
    "entities": ("customers", "accounts", "products", "stores", "agents", "campaigns", "regions", "devices"),
    "metric": ("revenue", "refunds", "logins", "support tickets", "page views", "failed payments", "orders"),
    "period": ("day", "week", "month", "quarter", "year"),
    "error": ("403", "409", "422", "429", "500", "E1042", "E2210", "TIMEOUT", "QUOTA_EXCEEDED"),
    "event": ("the last update", "the migration", "the outage on Monday", "the price change",
              "the new release", "switching plans", "enabling SSO", "the data import"),
    "language": ("French", "German", "Spanish", "Japanese", "Italian", "Portuguese", "Dutch", "Polish"),
}  # fmt: skip
# A sentence of specifics (who, where, when, how many) that real tickets carry and that sets two
# questions of the same intent apart.
DETAILS = (
    "{name} from {company} in {city} noticed it on {weekday}, for {people} of their {size} colleagues.",
    "This is for {company} ({city}): {name} says {people} people have been blocked since {weekday}.",
    "Context: {name}, {role} at {company}, {city} office, reported it {weekday} morning for {people} users.",
)
DETAIL_SLOTS = {
    "name": ("Ana", "Bruno", "Chloe", "Dmitri", "Elif", "Farah", "Goran", "Hana", "Ines", "Jonas", "Kenji",
             "Lena", "Marco", "Nadia", "Omar", "Priya", "Quentin", "Rosa", "Sven", "Tariq", "Uma", "Viktor",
             "Wen", "Ximena", "Yusuf", "Zoe", "Aaron", "Beatriz", "Carlos", "Dana"),
    "company": ("Northwind", "Globex", "Initech", "Umbrella Foods", "Stark Logistics", "Wayne Retail",
                "Hooli", "Vandelay Imports", "Soylent Labs", "Tyrell Health", "Cyberdyne Schools", "Wonka Bakery",
                "Oscorp Energy", "Pied Piper", "Aperture Travel", "Monarch Banking", "Gringotts Legal",
                "Duff Brewing", "Krusty Media", "Prestige Worldwide"),
    "city": ("Lisbon", "Oslo", "Toronto", "Nairobi", "Osaka", "Lima", "Krakow", "Austin", "Dublin", "Seoul",
             "Cape Town", "Melbourne", "Bogota", "Istanbul", "Helsinki", "Mumbai"),
    "weekday": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
    "people": ("two", "three", "five", "eight", "twelve", "twenty", "forty", "sixty"),
    "size": ("15", "30", "80", "120", "300", "1,000"),
    "role": ("the office manager", "an accountant", "the CTO", "a support lead", "an intern", "the head of sales"),
}  # fmt: skip
METRIC_COLUMNS = {"revenue": "amount", "refunds": "refund_amount", "orders": "order_count"}
FOLLOW_UPS = (
    "Thanks! Can this be done through the API as well?",
    "That did not work, I still see the old value. What else can I try?",
    "Great, please also add a sentence about the timeline.",
)
GREETINGS = ("Hi, ", "Hello! ", "Hey team, ", "Good morning. ")
SIGN_OFFS = (" Thanks!", " Thank you.", " Cheers", " Thanks in advance.")
KINDS = ("exact", "edited", "paraphrase")
THRESHOLDS = (0.8, 0.85, 0.9, 0.92, 0.95)
LINKAGES = ("leader", "single")


@dataclass(slots=True)
class Entry:
    messages: list[dict]
    group: int  # entries of one group are known duplicates of each other
    kind: str = "original"


@dataclass
class Phase:
    """Wall time and peak RSS of a block of work, sampled every 20 ms from /proc."""

    seconds: float = 0.0
    peak_mb: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> "Phase":
        self._before = _rss_mb()
        self._peak = self._before
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        self._started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._started
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self._peak, _rss_mb()) - self._before

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self._peak = max(self._peak, _rss_mb())


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    args = _parse_args()
    # Before numpy and torch are imported: BLAS and torch read these once.
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "LOGTUNE_EMBED_THREADS"):
        os.environ[name] = str(args.threads)
    warn_if_busy()
    print(f"Logtune {code_version()}: near-duplicate benchmark, {args.entries:,} entries, {args.threads} threads")
    rows: list[tuple[str, str]] = []
    rows += _random_vectors(args)
    if not args.skip_embed:
        rows += _entries(args)
    rows.append(("peak RSS of the process", f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB"))
    print_table(rows)


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=50_000)
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--duplicate-share", type=float, default=0.2, help="Share of entries that are copies.")
    parser.add_argument("--threads", type=int, default=2, help="torch and BLAS threads (the cores to use).")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--block-size", type=int, default=2048)
    parser.add_argument("--copies", type=int, default=5_000, help="Exact copies of one vector, for the worst case.")
    parser.add_argument("--skip-embed", action="store_true", help="Only cluster random unit vectors.")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument(
        "--vectors", help="A .npy file: the embeddings are saved there, or read from it if it exists (then not timed)."
    )
    return parser.parse_args()


# --- clustering alone ------------------------------------------------------------------------------------


def _random_vectors(args: argparse.Namespace) -> list[tuple[str, str]]:
    import numpy as np

    from curation.text.embeddings import DIMENSION, near_duplicate_clusters

    rng = np.random.default_rng(args.seed)
    vectors = rng.standard_normal((args.entries, DIMENSION), dtype=np.float32)
    copies = int(args.entries * args.duplicate_share)
    sources = rng.integers(0, args.entries - copies, copies)
    vectors[args.entries - copies :] = vectors[sources] + 0.1 * rng.standard_normal((copies, DIMENSION))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rows: list[tuple[str, str]] = []
    for linkage in LINKAGES:
        with Phase() as phase:
            clusters = near_duplicate_clusters(vectors, args.threshold, linkage=linkage, block_size=args.block_size)
        members = sum(len(cluster) for cluster in clusters)
        print(f"  random vectors, {linkage}: {len(clusters):,} clusters, {members:,} rows in them ({copies:,} copies)")
        rows += [
            (
                f"random unit vectors: cluster {args.entries:,} at {args.threshold}, {linkage}",
                f"{phase.seconds:,.1f} s",
            ),
            ("  memory above the vectors", f"{phase.peak_mb:,.0f} MB"),
            ("  rows in clusters (planted copies + sources)", f"{members:,}"),
        ]
    same = min(args.copies, args.entries - 1)
    vectors[1 : same + 1] = vectors[0]
    for linkage in LINKAGES:
        with Phase() as phase:
            clusters = near_duplicate_clusters(vectors, args.threshold, linkage=linkage, block_size=args.block_size)
        rows += [
            (f"  the same with {same:,} copies of one vector, {linkage}", f"{phase.seconds:,.1f} s"),
            ("  memory above the vectors", f"{phase.peak_mb:,.0f} MB"),
            ("  largest cluster", f"{len(clusters[0]) if clusters else 0:,}"),
        ]
    return rows


# --- real texts -----------------------------------------------------------------------------------------


def _entries(args: argparse.Namespace) -> list[tuple[str, str]]:
    import numpy as np

    from curation.text.embeddings import (
        DIMENSION,
        Embedder,
        keep_one_per_cluster,
        most_similar,
        near_duplicate_clusters,
        text_of_conversation,
    )

    entries = _make_entries(args.entries, args.duplicate_share, args.seed)
    texts = [text_of_conversation(entry.messages) for entry in entries]
    kinds = Counter(entry.kind for entry in entries)
    print(f"  entries: {dict(kinds)}; mean text {sum(map(len, texts)) / len(texts):,.0f} characters")
    with Phase() as load:
        embedder = Embedder()
    next_report = [0.0]

    def progress(done: int, total: int) -> None:
        if time.perf_counter() >= next_report[0]:
            print(f"  embedded {done:,} / {total:,}", flush=True)
            next_report[0] = time.perf_counter() + 30

    cached = bool(args.vectors and os.path.exists(args.vectors))
    with Phase() as embedding:
        if cached:  # measured before: only the clustering is new
            vectors = np.load(args.vectors)
            assert vectors.shape == (len(texts), DIMENSION), "--vectors holds another run's embeddings"
        else:
            vectors = embedder.embed(texts, batch_size=args.batch_size, progress=progress)
            if args.vectors:
                np.save(args.vectors, vectors)
    with Phase() as query:
        most_similar(vectors, vectors[0], 10, exclude=[0])
    groups = np.array([entry.group for entry in entries])
    rows = [
        ("model load", f"{load.seconds:,.1f} s, {load.peak_mb:,.0f} MB"),
        (f"embed {len(texts):,} texts (batch {args.batch_size})", f"{embedding.seconds:,.0f} s"),
        ("  texts/s", f"{len(texts) / embedding.seconds:,.0f}"),
        ("  memory above the model", f"{embedding.peak_mb:,.0f} MB"),
    ]
    if cached:
        rows = [rows[0], (f"embeddings of {len(texts):,} texts", f"read from {args.vectors}")]
    rows += [
        ("known duplicates (entries that are copies)", f"{len(entries) - kinds['original']:,}"),
        ("most_similar, k=10 over all vectors", f"{query.seconds * 1000:,.1f} ms"),
    ]
    for linkage in LINKAGES:
        with Phase() as clustering:
            clusters = near_duplicate_clusters(vectors, args.threshold, linkage=linkage, block_size=args.block_size)
        rows += [
            (f"cluster the embeddings at {args.threshold}, {linkage}", f"{clustering.seconds:,.1f} s"),
            ("  memory above the vectors", f"{clustering.peak_mb:,.0f} MB"),
            (
                "  clusters / entries dropped by keep-one",
                f"{len(clusters):,} / {len(keep_one_per_cluster(clusters)):,}",
            ),
        ]
        for threshold in THRESHOLDS:
            found = (
                clusters
                if threshold == args.threshold
                else near_duplicate_clusters(vectors, threshold, linkage=linkage)
            )
            rows += _scores(f"{linkage} at {threshold}", found, groups, entries)
    _show_examples(vectors, texts, groups, args.seed)
    return rows


def _scores(label: str, clusters: list[list[int]], groups, entries: list[Entry]) -> list[tuple[str, str]]:
    from curation.text.embeddings import keep_one_per_cluster

    precision, recall = _pair_scores(clusters, groups)
    recalls = _kind_recall(clusters, entries)
    lost, left = _keep_one_outcome(clusters, groups)
    largest = len(clusters[0]) if clusters else 0
    return [
        (f"pairs, {label}: precision / recall", f"{precision:.3f} / {recall:.3f}"),
        ("  recall exact / edited / paraphrase", " / ".join(f"{recalls[kind]:.2f}" for kind in KINDS)),
        ("  largest cluster / keep-one drops", f"{largest:,} / {len(keep_one_per_cluster(clusters)):,}"),
        ("  keep-one: conversations lost / copies left", f"{lost:,} / {left:,}"),
    ]


def _pair_scores(clusters: list[list[int]], groups) -> tuple[float, float]:
    """Pair precision and recall: of the pairs put together, those known to be duplicates, and the reverse."""
    together = sum(len(cluster) * (len(cluster) - 1) // 2 for cluster in clusters)
    correct = 0
    for cluster in clusters:
        for count in Counter(groups[cluster].tolist()).values():
            correct += count * (count - 1) // 2
    known = sum(count * (count - 1) // 2 for count in Counter(groups.tolist()).values())
    return (correct / together if together else 1.0), (correct / known if known else 1.0)


def _keep_one_outcome(clusters: list[list[int]], groups) -> tuple[int, int]:
    """After keep-one-per-cluster: known conversations of which no entry is left, and copies still there."""
    from curation.text.embeddings import keep_one_per_cluster

    dropped = set(keep_one_per_cluster(clusters))
    kept = Counter(group for index, group in enumerate(groups.tolist()) if index not in dropped)
    return len(set(groups.tolist())) - len(kept), sum(count - 1 for count in kept.values())


def _kind_recall(clusters: list[list[int]], entries: list[Entry]) -> dict[str, float]:
    """For each kind of copy, the share that ended in the same cluster as the entry it copies."""
    cluster_of = {index: number for number, cluster in enumerate(clusters) for index in cluster}
    original_of = {entry.group: index for index, entry in enumerate(entries) if entry.kind == "original"}
    hits: Counter = Counter()
    totals: Counter = Counter()
    for index, entry in enumerate(entries):
        if entry.kind == "original":
            continue
        totals[entry.kind] += 1
        source = original_of[entry.group]
        hits[entry.kind] += index in cluster_of and cluster_of.get(source) == cluster_of[index]
    return {kind: hits[kind] / totals[kind] if totals[kind] else 1.0 for kind in KINDS}


def _show_examples(vectors, texts: list[str], groups, seed: int) -> None:
    """Pairs near 0.8, 0.9 and 0.95, to see what a threshold means (docs/dedup.md quotes some)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    sample = rng.choice(len(texts), min(len(texts), 2_000), replace=False)
    similarity = vectors[sample] @ vectors[sample].T
    for target in (0.8, 0.9, 0.95):
        first, second = np.nonzero(np.triu(np.abs(similarity - target) < 0.005, k=1))
        if len(first):
            a, b = sample[first[0]], sample[second[0]]
            same = "known duplicates" if groups[a] == groups[b] else "distinct entries"
            print(f"\n  ~{target} ({similarity[first[0], second[0]]:.3f}, {same}):")
            print(f"    A: {texts[a][:300]!r}\n    B: {texts[b][:300]!r}")


# --- the entries ----------------------------------------------------------------------------------------


def _make_entries(count: int, duplicate_share: float, seed: int) -> list[Entry]:
    """`count` entries, `duplicate_share` of them copies of an earlier one, shuffled."""
    rng = random.Random(seed)
    copies = int(count * duplicate_share)
    originals = [_original(rng, group) for group in range(count - copies)]
    entries = [entry for entry, _ in originals]
    for _ in range(copies):
        source, slots = rng.choice(originals)
        kind = KINDS[rng.choices(range(3), weights=(3, 4, 3))[0]]
        entries.append(Entry(messages=_copy(rng, source, slots, kind), group=source.group, kind=kind))
    rng.shuffle(entries)
    return entries


def _original(rng: random.Random, group: int) -> tuple[Entry, dict]:
    intent = rng.randrange(len(INTENTS))
    slots = {name: rng.choice(values) for name, values in SLOTS.items()}
    slots.update(
        intent=intent,
        phrasing=rng.randrange(3),
        answer=rng.randrange(2),
        order=str(rng.randint(10_000, 99_999)),
        count=str(rng.choice((3, 5, 10, 20, 25, 50, 100, 250))),
        entity=slots["entities"].rstrip("s"),
        metric_column=METRIC_COLUMNS.get(slots["metric"], "value"),
        system=rng.choice(SYSTEM_PROMPTS),
        follow_up=rng.choice(FOLLOW_UPS) if rng.random() < 0.2 else "",
    )
    slots.update({name: rng.choice(values) for name, values in DETAIL_SLOTS.items()})
    slots["detail"] = rng.choice(DETAILS).format(**slots) if rng.random() < 0.8 else ""
    return Entry(messages=_messages(slots), group=group), slots


def _messages(slots: dict, question: str | None = None, answer: str | None = None) -> list[dict]:
    answers = INTENTS[slots["intent"]][1]
    question = question if question is not None else _question(slots, slots["phrasing"])
    answer = answer if answer is not None else answers[slots["answer"]].format(**slots)
    messages = [{"role": "system", "content": slots["system"]}, {"role": "user", "content": question}]
    messages.append({"role": "assistant", "content": answer})
    if slots["follow_up"]:
        messages += [
            {"role": "user", "content": slots["follow_up"]},
            {"role": "assistant", "content": f"Yes, {slots['name']}: {slots['thing']} works the same way there."},
        ]
    return messages


def _question(slots: dict, phrasing: int) -> str:
    text = INTENTS[slots["intent"]][0][phrasing].format(**slots).strip()
    return f"{text} {slots['detail']}".strip()


def _copy(rng: random.Random, source: Entry, slots: dict, kind: str) -> list[dict]:
    if kind == "exact":
        return [dict(message) for message in source.messages]
    question, answer = source.messages[1]["content"], source.messages[2]["content"]
    if kind == "paraphrase":
        other = rng.choice([number for number in range(3) if number != slots["phrasing"]])
        question = _question(slots, other)
        return _messages(slots, question=question, answer=answer)
    for _ in range(rng.randint(1, 3)):
        question = _edit(rng, question, slots)
    if rng.random() < 0.3:
        answer = _edit(rng, answer, slots)
    return _messages(slots, question=question, answer=answer)


def _edit(rng: random.Random, text: str, slots: dict) -> str:
    """One small change a person or a retrying client makes: case, punctuation, a typo, a number, a greeting."""
    choice = rng.randrange(6)
    if choice == 0:
        return text.lower()
    if choice == 1:
        return text.rstrip("?.!") if text[-1:] in "?.!" else text + "?"
    if choice == 2:
        words = text.split(" ")
        index = rng.randrange(len(words))
        word = words[index]
        if len(word) > 3:
            position = rng.randrange(len(word) - 1)
            words[index] = word[:position] + word[position + 1] + word[position] + word[position + 2 :]
        return " ".join(words)
    if choice == 3:
        return text.replace(slots["order"], str(rng.randint(10_000, 99_999))).replace(
            slots["count"], str(int(slots["count"]) + rng.randint(1, 9))
        )
    if choice == 4:
        return rng.choice(GREETINGS) + text
    return text + rng.choice(SIGN_OFFS)


if __name__ == "__main__":
    sys.exit(main())
