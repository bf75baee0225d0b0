"""TLS on the hops Shiori opens, each turned on by configuration.

- HTTPS at the gateways: ``SHIORI_TLS_CERT`` and ``SHIORI_TLS_KEY`` (the OPAC may have its own,
  ``SHIORI_OPAC_TLS_CERT``/``_KEY``). nameko's web server has no TLS, so ``services.gateway.entrypoints``
  wraps each accepted connection with :func:`server_context`, in that connection's own green thread.
- AMQPS to RabbitMQ: an ``amqps://`` broker URL. The broker's certificate is checked against
  ``SHIORI_BROKER_CA`` (else the system's CAs), and so is its host name, always.
- PostgreSQL: the database URL says it, ``?sslmode=verify-full&sslrootcert=/path/ca.pem``; nothing here.
- SMTP: ``SHIORI_SMTP_SECURITY`` (services/notices/mailer.py).
"""
import ssl
from urllib.parse import urlsplit

from nameko.exceptions import ConfigurationError

BROKER_CA = "SHIORI_BROKER_CA"


def server_context(cert_file, key_file):
    """A server's TLS context for its certificate (chain) and key, TLS 1.2 or newer; green, so that a
    handshake waits on the hub rather than blocking the process."""
    from eventlet.green import ssl as green_ssl  # here, so that reading a configuration does not load eventlet

    context = green_ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as error:
        raise ConfigurationError(f"cannot load the TLS certificate {cert_file!r} with its key {key_file!r}: "
                                 f"{error}") from None
    return context


def gateway_context(config):
    """The gateway's TLS context from its ``TLS_CERT``/``TLS_KEY``, or None for plain HTTP (both unset)."""
    cert_file, key_file = config.get("TLS_CERT") or None, config.get("TLS_KEY") or None
    if not cert_file and not key_file:
        return None
    if not (cert_file and key_file):
        raise ConfigurationError("HTTPS needs both a certificate and its key (SHIORI_TLS_CERT and SHIORI_TLS_KEY)")
    return server_context(cert_file, key_file)


def broker_ssl_options(amqp_uri, ca_file=None):
    """kombu's ``ssl`` options for ``amqp_uri`` (nameko's ``AMQP_SSL``): for ``amqps://``, the broker's
    certificate checked against ``ca_file`` (else the system's CAs) and issued to the URL's host name;
    None for plain ``amqp://``. A CA given for a plain URL is a mistake, not a request for plain text."""
    parts = urlsplit(amqp_uri or "")
    if parts.scheme != "amqps":
        if ca_file:
            raise ConfigurationError(f"{BROKER_CA} is set but the broker URL is {parts.scheme}://, not amqps://: "
                                     "give an amqps:// URL (SHIORI_BROKER_URL) to connect over TLS")
        return None
    return {"cert_reqs": ssl.CERT_REQUIRED, "ca_certs": ca_file or None, "server_hostname": parts.hostname}


def with_broker_tls(config, environ):
    """``config`` with ``AMQP_SSL`` set for its ``AMQP_URI``, as every process and command connects."""
    options = broker_ssl_options(config.get("AMQP_URI"), environ.get(BROKER_CA))
    return {**config, "AMQP_SSL": options} if options else config
