"""Documents read into structured blocks and cut into chunks: the first step of generating training data from a
team's documents (one model call per chunk). Pure Python, no Django.

- `read_document(name, data)`: PDF, DOCX, HTML, Markdown or plain text into a `Document` of `Block`s (heading,
  paragraph, list item, table row, code), each with its heading path, page (PDF) and character offsets.
- `chunk_document(document, max_chars=, overlap_chars=)`: `Chunk`s that follow the blocks and headings.
- `combinations_capped(chunks, k, cap)`: groups of k chunks for generation from several chunks, capped.
"""

from curation.text.documents.chunking import (
    MAX_CHARS,
    OVERLAP_CHARS,
    Capped,
    Chunk,
    chunk_document,
    combinations_capped,
)
from curation.text.documents.model import Block, BlockKind, Document, DocumentError
from curation.text.documents.reading import MAX_DOCUMENT_BYTES, read_document

__all__ = [
    "MAX_CHARS",
    "MAX_DOCUMENT_BYTES",
    "OVERLAP_CHARS",
    "Block",
    "BlockKind",
    "Capped",
    "Chunk",
    "Document",
    "DocumentError",
    "chunk_document",
    "combinations_capped",
    "read_document",
]
