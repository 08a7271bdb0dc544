"""Group page rows back into documents as they stream in, and finish each report.

A document is complete when all its expected rows arrived (every selected page, or the
single document row). Reports are built the moment a document completes, so memory
holds only documents still in flight and a killed run keeps every finished report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Iterator

from documents.report import DocumentReport, ErrorInfo, PageRecord


@dataclass
class _Pending:
    first: dict[str, Any]
    pages: dict[int, PageRecord] = field(default_factory=dict)
    document_error: ErrorInfo | None = None
    rows_seen: int = 0


class DocumentAssembler:
    def __init__(self, fingerprint: str, engines: dict[str, str]):
        self.fingerprint = fingerprint
        self.engines = engines
        self._pending: dict[str, _Pending] = {}
        self.duplicates = 0

    def add(self, row: dict[str, Any]) -> DocumentReport | None:
        """Take one assembled row; return the document's report if this row completed it."""
        doc_id = row["doc_id"]
        pending = self._pending.setdefault(doc_id, _Pending(first=row))
        page_number = int(row["page_number"])
        if page_number == 0:
            pending.rows_seen += 1
            if row.get("error_json"):
                pending.document_error = ErrorInfo(**json.loads(row["error_json"]))
        elif page_number in pending.pages:
            self.duplicates += 1  # defensive: a re-executed task must not duplicate a page
            return None
        else:
            pending.rows_seen += 1
            pending.pages[page_number] = PageRecord.model_validate_json(row["page_json"])
        if pending.rows_seen >= int(row["expected_rows"]):
            del self._pending[doc_id]
            return self._finish(pending)
        return None

    def flush(self) -> Iterator[DocumentReport]:
        """Finish documents whose rows never all arrived: missing pages get an error record."""
        for doc_id in list(self._pending):
            pending = self._pending.pop(doc_id)
            for number in json.loads(pending.first["pages_selected"]):
                if number not in pending.pages:
                    pending.pages[number] = PageRecord(
                        page_number=number, width=0, height=0, scale=1.0,
                        error=ErrorInfo(kind="lost", message="no result came back for this page", stage="pipeline"),
                    )
            yield self._finish(pending)

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def _finish(self, pending: _Pending) -> DocumentReport:
        row = pending.first
        pages = [pending.pages[n] for n in sorted(pending.pages)]
        return DocumentReport(
            source_path=row["source_path"],
            name=row["name"],
            sha256=row["sha256"] or None,
            size_bytes=int(row["size_bytes"]) if int(row["size_bytes"]) >= 0 else None,
            file_type=row["file_type"] or None,
            page_count=int(row["page_count"]),
            pages_selected=json.loads(row["pages_selected"]),
            config_fingerprint=self.fingerprint,
            engines=self.engines,
            pages=pages,
            pages_failed=sum(1 for p in pages if p.error),
            error=pending.document_error,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
