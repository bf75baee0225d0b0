"""Bulk imports of bibliographic records: a format's reader streams records from a file, and batches of
them go to the catalogue's ``import_works``. Used by ``POST /api/v1/works/import`` and by the operators'
command ``python -m shiori import``."""
import time
from itertools import islice

from services.catalog.aozora import read_aozora
from services.catalog.marc import read_marc21, read_marcxml

READERS = {"aozora-csv": read_aozora, "marc21": read_marc21, "marcxml": read_marcxml}
BATCH_SIZE = 500
MAX_REPORTED_ERRORS = 1000


def import_file(stream, file_format, import_works, progress=None, batch_size=BATCH_SIZE):
    """Read ``stream`` in ``file_format`` and send its records in batches to ``import_works`` (the catalogue's
    RPC). Answers ``{added, updated, rejected, errors: [{record, reason}]}``, record numbers counting from 1
    in the file; ``progress(summary, records_per_second)`` is told after each batch."""
    records = READERS[file_format](stream)
    summary = {"added": 0, "updated": 0, "rejected": 0, "errors": []}
    started, read = time.monotonic(), 0
    while batch := list(islice(records, batch_size)):
        read += len(batch)
        good = [record for record in batch if record.work is not None]
        refused = [{"record": record.position + 1, "reason": record.reason} for record in batch if record.work is None]
        if good:
            result = import_works([record.work for record in good])
            summary["added"] += result["added"]
            summary["updated"] += result["updated"]
            refused += [{"record": good[error["record"]].position + 1, "reason": error["reason"]}
                        for error in result["errors"]]
        summary["rejected"] += len(refused)
        summary["errors"].extend(refused[:MAX_REPORTED_ERRORS - len(summary["errors"])])
        if progress:
            progress(summary, read / max(time.monotonic() - started, 1e-6))
    return summary
