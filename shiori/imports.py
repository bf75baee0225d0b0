"""The parent side of a bulk import of bibliographic records: batches of records go to the catalogue's
``import_works``, and an upload (``POST /api/v1/works/import``) is read by a process of its own. That process is
the catalogue's ``python -m services.catalog.imports FORMAT``: the file on its standard input, one ``Imported``
record a JSON line on its standard output. The gateway knows it by that module name alone, so it runs none of the
catalogue's code (and loads none of its libraries); ``services/catalog/imports.py`` holds the readers.
"""
import io
import os
import sys
import time
from collections import deque, namedtuple
from itertools import islice
from pathlib import Path

import orjson

READING_PROCESS = "services.catalog.imports"
# Records per import_works call. Each call has fixed costs (the message, the look-ups of known records and
# names, a commit): 400,000 works went into PostgreSQL at ~5,100/s in batches of 500, ~5,500/s in 1,000s and
# ~6,000/s in 2,000s (benchmarks/README.md), but a 2,000-record batch took up to 1.1 s there, too near the RPC
# deadline (5 s) on a slower or busier machine.
BATCH_SIZE = 1000
IN_FLIGHT = 2  # batches being saved at once: the catalogue works on one while the database writes the other
MAX_REPORTED_ERRORS = 1000
_PIPE_BUFFER = 1 << 16
_CODE_ROOT = Path(__file__).resolve().parents[1]  # where the reading process finds the catalogue's code

Imported = namedtuple("Imported", "position work reason")
Imported.__doc__ = """One record of an import file: ``position`` is its 0-based number in the file; exactly one of
``work`` (the work dict) and ``reason`` (why it was rejected, in English) is set."""


class ReaderFailed(Exception):
    """The process reading an uploaded file ended without reading it to its end."""


def import_upload(stream, file_format, import_works, in_flight=IN_FLIGHT):
    """``services.catalog.imports.import_file`` for a server under eventlet: a process of its own reads the
    file, handed its bytes as they arrive, and hands back the records it reads. The hub would run nothing else
    while parsing, so every other request would wait for a hostile file; and the memory a parse takes is
    returned when the process ends. A failure to read ``stream`` that ended the file early (too large, the
    client gone) is raised once the records read before it are settled."""
    import eventlet
    from eventlet.green import subprocess

    reader = subprocess.Popen([sys.executable, "-m", READING_PROCESS, file_format], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, env=_reader_environment())
    feeding = eventlet.spawn(_feed, stream, reader.stdin)
    lines = io.BufferedReader(reader.stdout, _PIPE_BUFFER)  # eventlet's pipes are unbuffered: a byte a read
    try:
        summary = import_records((Imported(*orjson.loads(line)) for line in lines), import_works,
                                 in_flight=in_flight)
        if reader.wait() != 0:
            raise ReaderFailed(f"the import's reading process ended with status {reader.returncode}")
        if feeding.dead:  # else the reader stopped early, and the rest of the file does not matter
            feeding.wait()
        return summary
    finally:
        feeding.kill()
        if reader.poll() is None:
            reader.kill()
            reader.wait()
        lines.close()


def import_records(records, import_works, progress=None, batch_size=BATCH_SIZE, in_flight=IN_FLIGHT):
    """Send ``records`` (``Imported``) in batches to ``import_works``. Answers ``{added, updated, rejected,
    errors: [{record, reason}]}``, record numbers counting from 1 in the file; ``progress(summary,
    records_per_second)`` is told after each batch. Up to ``in_flight`` batches are saved at once (the catalogue
    saves one while the next is read and sent), except that a batch waits for the ones holding any of its
    records' source ids, so that a record repeated in the file is added once and then updated."""
    summary = {"added": 0, "updated": 0, "rejected": 0, "errors": []}
    started, read, sending = time.monotonic(), 0, deque()

    def settle():
        good, refused, reply, _source_ids = sending.popleft()
        if reply is not None:
            result = reply.result()
            summary["added"] += result["added"]
            summary["updated"] += result["updated"]
            refused += [{"record": good[error["record"]].position + 1, "reason": error["reason"]}
                        for error in result["errors"]]
        summary["rejected"] += len(refused)
        summary["errors"].extend(refused[:MAX_REPORTED_ERRORS - len(summary["errors"])])
        if progress:
            progress(summary, read / max(time.monotonic() - started, 1e-6))

    while batch := list(islice(records, batch_size)):
        read += len(batch)
        good = [record for record in batch if record.work is not None]
        refused = [{"record": record.position + 1, "reason": record.reason} for record in batch if record.work is None]
        source_ids = {record.work["source_id"] for record in good if record.work.get("source_id")}
        while sending and (len(sending) >= in_flight or any(source_ids & entry[3] for entry in sending)):
            settle()
        reply = import_works.call_async([record.work for record in good]) if good else None
        sending.append((good, refused, reply, source_ids))
    while sending:
        settle()
    return summary


def _reader_environment():
    """The reading process needs this code, and where temporary files go (an Aozora file is merged in one), but
    nothing else of the server's: no secret, no broker address."""
    passed_on = {name: os.environ[name] for name in ("PATH", "TMPDIR") if name in os.environ}
    return {"PYTHONPATH": str(_CODE_ROOT), **passed_on}


def _feed(stream, pipe):
    try:
        while block := stream.read(_PIPE_BUFFER):
            pipe.write(block)
    except BrokenPipeError:
        pass  # the reading process ended early; its exit status says why
    finally:
        try:
            pipe.close()
        except BrokenPipeError:
            pass
