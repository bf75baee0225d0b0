"""Logging that keeps personal data out (PRIVACY.md 5).

Our own code logs no personal fields. Some libraries print whole message payloads at DEBUG (nameko's RPC
replies hold patron records; kombu prints connection URIs with passwords), so those loggers never go
below INFO, whatever level the operator asks for.
"""
import logging
import os

PAYLOAD_LOGGERS = ("nameko.rpc", "nameko.messaging", "nameko.events", "nameko.standalone", "kombu", "amqp")


def keep_payloads_out_of_logs():
    for name in PAYLOAD_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO if name.startswith("nameko") else logging.WARNING)


def configure_logging(process_name):
    logging.basicConfig(
        level=os.environ.get("SHIORI_LOG_LEVEL", "INFO").upper(),
        format=f"%(asctime)s {process_name} %(levelname)s %(name)s: %(message)s",
    )
    keep_payloads_out_of_logs()
