"""Chunks of a document for one model call each, cut along its structure.

A chunk is a slice of `Document.text`: whole blocks while they fit, starting at a heading where the chunk before
it is already a quarter full (smaller sections are kept together), and carrying the heading path it starts under.
A chunk cut inside a section starts with the end of the chunk before it (whole blocks, else whole sentences, else
whole words, up to `overlap_chars`); one that starts a section does not. A block longer than `max_chars` is cut at
sentence ends, a sentence longer than that between words, and a word longer than that where it must."""

import bisect
import hashlib
import itertools
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from curation.text.documents.model import PATH_SEPARATOR, BlockKind, Document

MAX_CHARS = 4_000  # about 1,000 tokens: room in any model's context for the instructions and the answers
OVERLAP_CHARS = 400
SENTENCE_END = re.compile(r"(?<=[.!?…。])[\"'”’)\]]*\s+")
LINE_END = re.compile(r"\n+")
WORD_END = re.compile(r"\s+")


@dataclass(frozen=True)
class Chunk:
    index: int
    id: str  # sha256 of the document's hash, the index and the text
    text: str  # document.text[start:end]
    heading_path: tuple[str, ...]
    start: int
    end: int
    first_page: int | None = None  # PDF only
    last_page: int | None = None

    @property
    def context(self) -> str:
        """The heading path as one line, its headings joined by PATH_SEPARATOR."""
        return PATH_SEPARATOR.join(self.heading_path)


@dataclass(frozen=True)
class _Unit:
    """A block, or a piece of one too long for a chunk."""

    start: int
    end: int
    heading: bool
    heading_path: tuple[str, ...]
    page: int | None


def chunk_document(
    document: Document, *, max_chars: int = MAX_CHARS, overlap_chars: int = OVERLAP_CHARS
) -> list[Chunk]:
    if max_chars <= 0 or overlap_chars < 0:
        raise ValueError(
            f"max_chars must be positive and overlap_chars not negative (got {max_chars}, {overlap_chars})"
        )
    if overlap_chars >= max_chars:
        raise ValueError(f"overlap_chars ({overlap_chars}) must be smaller than max_chars ({max_chars})")
    units = list(_units(document, max_chars))
    if not units:
        return []
    spans: list[tuple[int, int, int]] = []  # (chunk start, index of the chunk's first new unit, index past its last)
    start, first = units[0].start, 0
    for index, unit in enumerate(units[1:], start=1):
        at_section = unit.heading and unit.start - start >= max_chars // 4
        if unit.end - start <= max_chars and not at_section:
            continue
        end = index
        # No heading left alone at a chunk's end: it goes on to the next chunk, if they fit there.
        while (
            not at_section
            and end - 1 > first
            and units[end - 1].heading
            and unit.end - units[end - 1].start <= max_chars
        ):
            end -= 1
        spans.append((start, first, end))
        first = end
        start = (
            units[end].start
            if at_section or end < index
            else _overlap(document.text, units, spans[-1], index, max_chars, overlap_chars)
        )
    spans.append((start, first, len(units)))
    starts = [unit.start for unit in units]
    return [_chunk(document, units, starts, span, number) for number, span in enumerate(spans)]


def _overlap(
    text: str, units: list[_Unit], span: tuple[int, int, int], following: int, max_chars: int, overlap: int
) -> int:
    """Where the chunk that goes on from `span` starts: the earliest boundary (a unit's start, else a sentence's,
    else a word's) in the end of `span` no more than `overlap` characters back, that leaves room for the next unit."""
    chunk_start, first, end = span
    previous_end, room_end = units[end - 1].end, units[following].end
    candidates = [unit.start for unit in units[first + 1 : end]]
    last = units[end - 1]
    for pattern in (SENTENCE_END, WORD_END):
        candidates += [match.end() for match in pattern.finditer(text, last.start, last.end)]
    for boundary in sorted(candidates):
        if boundary > chunk_start and previous_end - boundary <= overlap and room_end - boundary <= max_chars:
            return boundary
    return units[following].start


def _chunk(
    document: Document, units: list[_Unit], starts: list[int], span: tuple[int, int, int], number: int
) -> Chunk:
    start, _, stop = span
    end = units[stop - 1].end
    inside = units[bisect.bisect_right(starts, start) - 1 : stop]
    pages = [unit.page for unit in inside if unit.page is not None]
    text = document.text[start:end]
    digest = hashlib.sha256(f"{document.sha256}\n{number}\n{text}".encode()).hexdigest()
    return Chunk(
        number, digest, text, inside[0].heading_path, start, end, min(pages, default=None), max(pages, default=None)
    )


def _units(document: Document, max_chars: int) -> Iterator[_Unit]:
    for block in document.blocks:
        heading = block.kind == BlockKind.HEADING
        pieces = [(block.start, block.end)]
        if block.end - block.start > max_chars:
            first = LINE_END if block.kind == BlockKind.CODE else SENTENCE_END
            pieces = _split(document.text, block.start, block.end, max_chars, (first, WORD_END))
        for start, end in pieces:
            yield _Unit(start, end, heading, block.heading_path, block.page)


def _split(
    text: str, start: int, end: int, max_chars: int, patterns: Sequence[re.Pattern[str]]
) -> list[tuple[int, int]]:
    """[start, end) cut into pieces of at most max_chars at the first pattern's boundaries, a piece still too long
    at the next pattern's, and one too long for all of them every max_chars characters."""
    if end - start <= max_chars:
        return [(start, end)]
    if not patterns:
        return [(cut, min(cut + max_chars, end)) for cut in range(start, end, max_chars)]
    # (piece start, piece end) of the text between boundaries: a boundary's whitespace belongs to no piece.
    parts, at = [], start
    for match in patterns[0].finditer(text, start, end):
        if match.start() > at:
            parts.append((at, match.start()))
        at = match.end()
    if at < end:
        parts.append((at, end))
    pieces: list[tuple[int, int]] = []
    for part_start, part_end in parts:
        if pieces and part_end - pieces[-1][0] <= max_chars:
            pieces[-1] = (pieces[-1][0], part_end)
        else:
            pieces += _split(text, part_start, part_end, max_chars, patterns[1:])
    return pieces


class Capped(NamedTuple):
    combinations: list[tuple[Chunk, ...]]
    total: int  # how many there are uncapped: comb(len(chunks), k)


def combinations_capped(chunks: Sequence[Chunk], k: int, cap: int) -> Capped:
    """Up to `cap` groups of `k` distinct chunks, each in document order, and how many groups there are in all
    (so a caller can warn before asking a model that many times). The same chunks give the same groups, in this
    order: neighbours (chunks i..i+k-1), then chunks under the same top heading, then the rest in order."""
    if k <= 0 or cap < 0:
        raise ValueError(f"k must be positive and cap not negative (got {k}, {cap})")
    total = math.comb(len(chunks), k)
    chosen: list[tuple[int, ...]] = []
    seen: set[tuple[int, ...]] = set()
    for group in itertools.chain(
        _neighbours(len(chunks), k), _same_heading(chunks, k), itertools.combinations(range(len(chunks)), k)
    ):
        if len(chosen) >= cap:
            break
        if group not in seen:
            seen.add(group)
            chosen.append(group)
    return Capped([tuple(chunks[index] for index in group) for group in chosen], total)


def _neighbours(n: int, k: int) -> Iterator[tuple[int, ...]]:
    return (tuple(range(first, first + k)) for first in range(n - k + 1))


def _same_heading(chunks: Sequence[Chunk], k: int) -> Iterator[tuple[int, ...]]:
    sections: dict[str, list[int]] = {}
    for position, chunk in enumerate(chunks):
        if chunk.heading_path:
            sections.setdefault(chunk.heading_path[0], []).append(position)
    for members in sections.values():
        yield from itertools.combinations(members, k)
