"""Bulk imports of bibliographic records: a format's reader streams records from a file, and batches of
them go to the catalogue's ``import_works`` (``shiori.imports``). The operators' command ``python -m shiori
import`` reads in its own process (``import_file``).

Run as ``python -m services.catalog.imports FORMAT``, this module is the process that reads a file uploaded to
``POST /api/v1/works/import`` (``shiori.imports.import_upload`` starts it): the file on its standard input, one
record a JSON line on its standard output.
"""
import os
import sys

import orjson

from services.catalog.aozora import read_aozora
from services.catalog.marc import read_marc21, read_marcxml
from shiori.imports import BATCH_SIZE, IN_FLIGHT, import_records

READERS = {"aozora-csv": read_aozora, "marc21": read_marc21, "marcxml": read_marcxml}


def import_file(stream, file_format, import_works, progress=None, batch_size=BATCH_SIZE, in_flight=IN_FLIGHT):
    """Read ``stream`` in ``file_format``, in this process, and send its records in batches to ``import_works``
    (the catalogue's RPC, called with ``call_async``); see ``import_records``."""
    return import_records(READERS[file_format](stream), import_works, progress, batch_size, in_flight)


def _read_to_parent(file_format):
    os.nice(10)  # the desks' requests come first when the CPU is short
    out = sys.stdout.buffer
    for record in READERS[file_format](sys.stdin.buffer):
        out.write(orjson.dumps(list(record)) + b"\n")
    out.flush()


if __name__ == "__main__":
    _read_to_parent(sys.argv[1])
