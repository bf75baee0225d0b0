"""Operators' commands.

  python -m shiori run                 the whole system (all services, first-run setup, demo data)
  python -m shiori serve NAME          one service: patrons, loans, catalog or gateway
  python -m shiori bootstrap           first-run setup of a tenant against running services
"""
import argparse
import sys

from shiori.serve import SERVICE_NAMES, quiet_eventlet_deprecation


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m shiori", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="start the whole system")
    serve = commands.add_parser("serve", help="run one service")
    serve.add_argument("service", choices=SERVICE_NAMES)
    commands.add_parser("bootstrap", help="create the tenant, its first admin and demo data")
    args = parser.parse_args(argv)

    if args.command == "serve":
        from shiori.serve import serve
        serve(args.service)
        return 0
    if args.command == "bootstrap":
        quiet_eventlet_deprecation()
        import eventlet
        eventlet.monkey_patch()
        from shiori.bootstrap import bootstrap
        bootstrap()
        return 0
    from shiori.launcher import run
    return run()


if __name__ == "__main__":
    sys.exit(main())
