"""Import benchmark of the operators' command: the synthetic catalogue of catalogue.py written as a MARC21 file
and loaded with ``python -m shiori import --format marc21`` into the running system, the way an operator
loads a library's records.

    .venv/bin/python benchmarks/import_command.py [--works 1000000] [--database postgresql|sqlite]

The records are catalogue.py's (real Aozora titles, people and publishers, ISBNs, NDC classes), each written
as an ISO 2709 record with pymarc: 001 (the record's id), 020 ISBN, 084 NDC, 245 $a title $b subtitle, 700
per person ($e 訳 for a translator), 264 $b publisher $c year. The system starts as in catalogue.py (fresh
databases, throwaway vhost, ``--catalog-processes``); the command runs as its own process on the same machine,
reading the file as it goes. Reports records/s (the file read, parsed, sent and saved), the CPU of the
command, of the catalogue's processes and of the whole machine, and the command's peak memory (as last seen
in /proc, once a second). On a
PostgreSQL server with autovacuum off, ANALYZE runs as catalogue.py's Analyzer does (whenever the works grew
by 10%). Only 127.0.0.1 is used; everything is removed at the end. See benchmarks/README.md.
"""
import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

import eventlet  # noqa: E402

eventlet.monkey_patch()  # before psycopg2 is imported

import argparse  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for path in (str(HERE), str(REPO)):
    if path not in sys.path:
        sys.path.insert(0, path)

from pymarc import Field, Record, Subfield  # noqa: E402

from catalogue import (  # noqa: E402
    RESULTS_DIR, Analyzer, Catalogue, add_catalog_processes, catalog_status, check_catalog_processes, code_version,
    proc_status,
)
from harness import (  # noqa: E402
    LOCALHOST, TENANT, Broker, Stop, SystemUnderTest, add_broker_arguments, check_broker_arguments, cpu_seconds,
    ended_early, free_port, machine_cpu, say, stop_main_on_signals, write_report,
)


def write_marc21(catalogue, works, path):
    """The first ``works`` records of the synthetic catalogue as one ISO 2709 file; answers its size."""
    with open(path, "wb") as out:
        for _i, work, _copy in catalogue.records(works, 0):
            record = Record(to_unicode=True, force_utf8=True, leader="00000nam a2200000 i 4500")
            record.add_field(Field(tag="001", data=work["source_id"]))
            if work.get("isbn"):
                record.add_field(Field(tag="020", indicators=[" ", " "], subfields=[Subfield("a", work["isbn"])]))
            if work.get("ndc"):
                record.add_field(Field(tag="084", indicators=[" ", " "],
                                       subfields=[Subfield("a", work["ndc"]), Subfield("2", "njb/9")]))
            title = [Subfield("a", work["title"])] + ([Subfield("b", work["subtitle"])] if work.get("subtitle") else [])
            record.add_field(Field(tag="245", indicators=["1", "0"], subfields=title))
            for person in work["authors"]:
                role = [Subfield("e", "訳")] if person["role"] == "translator" else []
                record.add_field(Field(tag="700", indicators=["1", " "],
                                       subfields=[Subfield("a", person["name"])] + role))
            published = [Subfield("b", work["publisher"])] if work.get("publisher") else []
            record.add_field(Field(tag="264", indicators=[" ", "1"],
                                   subfields=published + [Subfield("c", str(work["published_year"]))]))
            out.write(record.as_marc())
    return path.stat().st_size


def run_import(system, marc_path, analyzer, stopping):
    """Runs the import command to its end; answers its summary, last progress line, wall seconds, rusage and
    peak memory (MiB, VmHWM as last seen while it ran)."""
    command = [sys.executable, "-m", "shiori", "import", "--format", "marc21", "--tenant", TENANT, str(marc_path)]
    output, errors = marc_path.with_suffix(".out"), marc_path.with_suffix(".err")
    began, peak = time.monotonic(), None
    with open(output, "wb") as out, open(errors, "wb") as err:
        process = subprocess.Popen(command, cwd=REPO, env=system.env, stdout=out, stderr=err,
                                   stdin=subprocess.DEVNULL)
    try:
        while not (finished := os.wait4(process.pid, os.WNOHANG))[0]:
            if stopping.is_set():
                raise Stop("stopping")
            if analyzer.emulate:
                # the highest work id (read through the primary key) stands for the works saved so far
                analyzer.after_batch(analyzer.query("SELECT COALESCE(MAX(id), 0) FROM works")[0][0])
            time.sleep(1)
            peak = proc_status(process.pid).get("VmHWM", peak)  # none once it has exited
    except BaseException:
        process.terminate()
        process.wait()
        raise
    _pid, status, usage = finished
    wall = time.monotonic() - began
    process.returncode = os.waitstatus_to_exitcode(status)
    progress = errors.read_text(errors="replace").replace("\r", "\n").strip().splitlines()
    if process.returncode != 0:
        raise RuntimeError(f"the import command exited with {process.returncode}: {progress[-5:]}")
    return output.read_text(), progress[-1] if progress else "", wall, usage, peak


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--works", type=int, default=1_000_000, help="records in the file (default 1000000)")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="postgresql")
    add_catalog_processes(parser)
    parser.add_argument("--seed", type=int, default=20240501)
    parser.add_argument("--pg-analyze", choices=("auto", "off"), default="auto",
                        help="auto (default): ANALYZE as autovacuum would if the server has autovacuum off")
    add_broker_arguments(parser)
    parser.add_argument("--pg-port", type=int, default=5432)
    parser.add_argument("--output", help="JSON results (default benchmarks/results/import-<database>-<works>.json)")
    parser.add_argument("--keep-data", action="store_true", help="keep the temporary data directory and databases")
    args = parser.parse_args(argv)
    check_catalog_processes(parser, args)
    if args.works < 1000:
        parser.error("--works: at least 1000")
    check_broker_arguments(args)
    return args


def main(argv=None):
    args = parse_args(argv)
    stopping = stop_main_on_signals()
    under_test = SystemUnderTest(
        args.database, Broker(args.broker_url, args.broker_admin_url), keep_data=args.keep_data,
        postgres={"host": LOCALHOST, "port": args.pg_port}, prefix="shiori-bench-import-",
        environ={"SHIORI_REPLICAS": f"catalog={args.catalog_processes}", "SHIORI_OPAC_HOST": LOCALHOST,
                 "SHIORI_OPAC_PORT": str(free_port())})
    report = {"benchmark": "import_command", "format": "marc21", "database": args.database, "works": args.works,
              "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
              "catalog_processes": args.catalog_processes, "seed": args.seed, "code": code_version()}
    exit_code = 0
    try:
        marc_path = under_test.data_dir / "works.mrc"
        began = time.monotonic()
        size = write_marc21(Catalogue(args.seed), args.works, marc_path)
        say(f"wrote {args.works:,} MARC21 records, {size / 2 ** 20:,.0f} MiB, in {time.monotonic() - began:.0f} s")
        under_test.start()
        system, databases = under_test.system, under_test.databases
        catalog_pids = [pid for name, pid in system.processes().items() if name.split("-")[0] == "catalog"]
        analyzer = Analyzer(databases, args.pg_analyze)
        say(f"system up; importing with python -m shiori import ({args.catalog_processes} catalogue processes"
            + (", ANALYZE emulated: the server runs autovacuum off" if analyzer.emulate else "") + ") ...")
        catalog_before, machine_before = sum(map(cpu_seconds, catalog_pids)), machine_cpu()
        summary, last_progress, wall, usage, peak = run_import(system, marc_path, analyzer, stopping)
        catalog_after, machine_after = sum(map(cpu_seconds, catalog_pids)), machine_cpu()
        command_cpu = usage.ru_utime + usage.ru_stime
        report["import"] = {
            "summary": summary.strip(), "last_progress": last_progress, "wall_seconds": round(wall, 1),
            "records_per_s": round(args.works / wall, 1),
            "command_cpu_ms_per_record": round(1000 * command_cpu / args.works, 3),
            "command_peak_rss_mib": peak,
            "catalog_cpu_percent": round(100 * (catalog_after - catalog_before) / wall, 1),
            "machine_cpu_percent": round(100 * (os.cpu_count() or 1) * (machine_after[0] - machine_before[0])
                                         / (machine_after[1] - machine_before[1]), 1),
            "analyze_runs": analyzer.runs, "analyze_seconds": round(analyzer.seconds, 1),
        }
        report["catalog_memory_end"] = catalog_status(catalog_pids)
        imp = report["import"]
        say(f"== python -m shiori import --format marc21, {args.works:,} records, {args.database}, "
            f"{os.cpu_count()} CPUs, code {report['code']['commit']} ==")
        say(f"{imp['records_per_s']:,} records/s ({imp['wall_seconds']} s, the command's own last line: "
            f"{last_progress.strip()})")
        say(f"CPU: the command {imp['command_cpu_ms_per_record']} ms a record (peak RSS "
            f"{imp['command_peak_rss_mib']} MiB), catalogue {imp['catalog_cpu_percent']}%, machine "
            f"{imp['machine_cpu_percent']}% (of one core); ANALYZE {imp['analyze_runs']} times "
            f"({imp['analyze_seconds']} s)")
    except (Stop, Exception) as error:  # noqa: BLE001
        exit_code = ended_early(error)
    finally:
        stopping.set()
        under_test.close()
    if report.get("import"):
        output = Path(args.output) if args.output else RESULTS_DIR / f"import-{args.database}-{args.works}.json"
        write_report(report, output, complete=exit_code == 0)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
