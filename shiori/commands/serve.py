"""Run one service in this process: ``python -m shiori serve catalog``."""
import importlib
import logging
import os
import signal
import sys
import warnings

SERVICE_NAMES = ("patrons", "loans", "catalog", "statistics", "notices", "gateway", "opac")


def quiet_eventlet_deprecation():
    # nameko 2 is built on eventlet; its import-time deprecation notice would open every log.
    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")


def service_class(service_name):
    module = importlib.import_module(f"services.{service_name}.service")
    for value in vars(module).values():
        if isinstance(value, type) and getattr(value, "name", None) == service_name:
            return value
    raise LookupError(f"services/{service_name}/service.py defines no service named {service_name!r}")


def serve(service_name):
    quiet_eventlet_deprecation()
    import eventlet

    eventlet.monkey_patch()  # before nameko, kombu or a database driver is imported

    from nameko.runners import ServiceRunner

    from shiori.config import load_config
    from shiori.logs import configure_logging

    os.umask(0o077)  # its databases and files are this process's alone
    configure_logging(service_name)
    config = load_config(service_name)
    if not config.get("AMQP_URI"):
        sys.exit(f"{service_name}: AMQP_URI is not set: each process connects to the broker as its own user "
                 "(make run gives every process its own; see docker-compose.yml)")
    runner = ServiceRunner(config)
    runner.add_service(service_class(service_name))

    def stop(_signum, _frame):
        eventlet.spawn_n(runner.stop)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    runner.start()
    logging.getLogger(__name__).info("%s started", service_name)
    runner.wait()
