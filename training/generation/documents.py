"""Documents to generate training data from: an upload is kept byte for byte with its SHA-256 and what reading it
gave; a file that cannot be read is kept too, with the reader's reason, and simply offers no chunks."""

import hashlib
from functools import lru_cache

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction

from curation.audit.services import audit_record
from curation.models import ApiKey, Project
from curation.text.documents import (
    MAX_CHARS,
    MAX_DOCUMENT_BYTES,
    OVERLAP_CHARS,
    Chunk,
    Document,
    DocumentError,
    chunk_document,
    read_document,
)
from training.models import SourceDocument

MAX_NAME = 255


def document_upload(
    *, project: Project, name: str, data: bytes, actor: User | None = None, api_key: ApiKey | None = None
) -> tuple[SourceDocument, bool]:
    """Store an uploaded document and read it. Returns (document, created): the same bytes uploaded again give the
    stored document back. Raises ValidationError (field `file`) only for an empty or oversized upload; a file the
    readers cannot read is stored with its reason in `error`. Audited as `documents.upload`."""
    name = (name or "document").replace("\\", "/").rsplit("/", 1)[-1][:MAX_NAME] or "document"
    if not data:
        raise ValidationError({"file": f"{name} is empty."})
    if len(data) > MAX_DOCUMENT_BYTES:
        raise ValidationError({"file": f"{name} is {len(data):,} bytes, over the limit of {MAX_DOCUMENT_BYTES:,}."})
    sha256 = hashlib.sha256(data).hexdigest()
    stored = SourceDocument.objects.filter(project=project, sha256=sha256).first()
    if stored is not None:
        return stored, False
    document = SourceDocument(project=project, name=name, sha256=sha256, size=len(data), created_by=actor,
                              created_by_key=api_key)  # fmt: skip
    try:
        read = read_document(name, data)
    except DocumentError as exc:
        document.error = str(exc)
    else:
        document.kind, document.pages, document.characters = read.format, read.pages, len(read.text)
        document.title = next((block.text for block in read.headings), "")[:500]
        document.chunks = len(chunk_document(read))
    document.file.save(f"{sha256[:16]}-{name}", ContentFile(data), save=False)
    try:
        with transaction.atomic():
            document.save()
    except IntegrityError:  # the same bytes uploaded at the same moment
        document.file.delete(save=False)
        return SourceDocument.objects.get(project=project, sha256=sha256), False
    audit_record(project=project, action="documents.upload", actor=actor, api_key=api_key,
                 detail={"document_id": document.pk, "name": name, "sha256": sha256, "size": len(data),
                         "readable": document.readable})  # fmt: skip
    return document, True


def document_delete(*, document: SourceDocument, actor: User | None = None, api_key: ApiKey | None = None) -> None:
    """Remove a document and its file. Rows generated from it keep their provenance (name, SHA-256, chunk)."""
    detail = {"document_id": document.pk, "name": document.name, "sha256": document.sha256}
    document.file.delete(save=False)
    document.delete()
    audit_record(project=document.project, action="documents.delete", actor=actor, api_key=api_key, detail=detail)


def document_read(document: SourceDocument) -> Document:
    """The stored document read again (raises DocumentError for one that cannot be read)."""
    return _read(document.pk, document.sha256, document.name, document.file.name)


@lru_cache(maxsize=8)
def _read(pk: int, sha256: str, name: str, file_name: str) -> Document:
    from django.core.files.storage import default_storage

    with default_storage.open(file_name, "rb") as handle:
        return read_document(name, handle.read())


def document_chunks(
    document: SourceDocument, *, max_chars: int = MAX_CHARS, overlap_chars: int = OVERLAP_CHARS
) -> list[Chunk]:
    """The document's chunks at this size; [] for a document that cannot be read."""
    if document.error:
        return []
    return chunk_document(document_read(document), max_chars=max_chars, overlap_chars=overlap_chars)
