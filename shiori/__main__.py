"""Operators' commands.

  python -m shiori run                 the whole system (all services, first-run setup, demo data)
  python -m shiori serve NAME          one service: patrons, loans, catalog, statistics, notices, gateway, opac
  python -m shiori bootstrap           first-run setup of a tenant against running services
  python -m shiori import --format F FILE   bulk-import bibliographic records into a running catalogue
  python -m shiori verify-access-record     check that no entry of the access record was changed or removed
  python -m shiori rewrap-data-keys         move every patron's data key to the newest master key
  python -m shiori provision-broker         create the broker's virtual host, users and permissions
  python -m shiori secrets > .env           a new deployment's secrets, for docker-compose.yml
  python -m shiori retention [--dry-run]    delete (or count) patrons unused for the retention period
  python -m shiori dead-letters list [--service S]     events a subscriber failed to handle, and why
  python -m shiori dead-letters replay [--service S] (--id EVENT_ID ... | --all)   publish them again
"""
import argparse
import os
import sys

from shiori.commands.serve import SERVICE_NAMES, quiet_eventlet_deprecation


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m shiori", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="start the whole system")
    serve = commands.add_parser("serve", help="run one service")
    serve.add_argument("service", choices=SERVICE_NAMES)
    commands.add_parser("bootstrap", help="create the tenant, its first admin and demo data")
    importing = commands.add_parser("import", help="bulk-import records (aozora-csv, marc21, marcxml)")
    importing.add_argument("--format", required=True, choices=("aozora-csv", "marc21", "marcxml"))
    importing.add_argument("--tenant", default=os.environ.get("SHIORI_TENANT", "kaizu"))
    importing.add_argument("file", type=argparse.FileType("rb"))
    verifying = commands.add_parser("verify-access-record", help="check the access record's hash chain")
    verifying.add_argument("--tenant", default=os.environ.get("SHIORI_TENANT", "kaizu"))
    commands.add_parser("rewrap-data-keys", help="re-wrap data keys under the newest master key (online)")
    retention = commands.add_parser("retention", help="delete patrons unused for the retention period")
    retention.add_argument("--dry-run", action="store_true", help="only count them")
    retention.add_argument("--tenant", default=os.environ.get("SHIORI_TENANT", "kaizu"))
    dead_letters = commands.add_parser("dead-letters", help="list or replay the events subscribers failed to handle")
    dead_letters.add_argument("action", choices=("list", "replay"))
    dead_letters.add_argument("--service", choices=SERVICE_NAMES, help="this service's dead letters only")
    dead_letters.add_argument("--id", dest="event_ids", action="append", metavar="EVENT_ID",
                              help="replay the dead letters of this event (repeatable)")
    dead_letters.add_argument("--all", dest="replay_all", action="store_true", help="replay every one")
    commands.add_parser("provision-broker", help="the broker's virtual host, a user per process, permissions")
    commands.add_parser("secrets", help="print a new deployment's secrets as NAME=value lines (compose's .env)")
    args = parser.parse_args(argv)

    if args.command == "serve":
        from shiori.commands.serve import serve
        serve(args.service)
        return 0
    if args.command == "run":
        from shiori.commands.launcher import run
        return run()
    if args.command == "secrets":
        quiet_eventlet_deprecation()
        from shiori.broker import OPERATOR
        from shiori.commands.deployment import new_deployment_secrets
        for name, value in new_deployment_secrets([*SERVICE_NAMES, OPERATOR]).items():
            print(f"{name}={value}")
        return 0
    if args.command == "dead-letters":
        quiet_eventlet_deprecation()
        from shiori.commands import dead_letters
        return dead_letters.main(args.action, args.service, args.event_ids, args.replay_all)
    if args.command == "provision-broker":
        from shiori.commands.launcher import provision_from_environment
        return provision_from_environment(os.environ)
    # The rest talk to the running services over RPC.
    quiet_eventlet_deprecation()
    import eventlet
    eventlet.monkey_patch()
    from shiori.commands import calls

    operations = {
        "bootstrap": lambda: calls.bootstrap() or 0,
        "import": lambda: calls.import_records(args.file, args.format, args.tenant),
        "verify-access-record": lambda: calls.verify_access_record(args.tenant),
        "rewrap-data-keys": calls.rewrap_data_keys,
        "retention": lambda: calls.apply_retention(args.tenant, args.dry_run),
    }
    return operations[args.command]()

if __name__ == "__main__":
    sys.exit(main())
