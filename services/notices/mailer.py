"""Sending e-mail over SMTP, as configured (host, port, none/STARTTLS/TLS, credentials)."""
import smtplib
import ssl

from nameko.exceptions import ConfigurationError
from nameko.extensions import DependencyProvider

SECURITY = ("none", "starttls", "tls")


class Mailer(DependencyProvider):
    """Hands each worker a function that sends one ``email.message.EmailMessage``; any failure raises.
    An SMTP_SECURITY it does not know stops the service from starting, rather than mean plain text."""

    def setup(self):
        config = self.container.config
        self.settings = {key: config.get(key) for key in (
            "SMTP_HOST", "SMTP_PORT", "SMTP_SECURITY", "SMTP_USER", "SMTP_PASSWORD", "SMTP_TIMEOUT", "SMTP_CA_FILE")}
        if self.settings["SMTP_SECURITY"] not in SECURITY:
            raise ConfigurationError(f"SHIORI_SMTP_SECURITY is {self.settings['SMTP_SECURITY']!r}: "
                                     f"give one of {', '.join(SECURITY)}")

    def get_dependency(self, worker_ctx):
        return self.send

    def send(self, message):
        settings = self.settings
        host, port, timeout = settings["SMTP_HOST"], int(settings["SMTP_PORT"]), float(settings["SMTP_TIMEOUT"])
        # The server's certificate is checked, against the system's CAs or the city's own (SMTP_CA_FILE).
        context = ssl.create_default_context(cafile=settings["SMTP_CA_FILE"] or None)
        if settings["SMTP_SECURITY"] == "tls":
            client = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
        else:
            client = smtplib.SMTP(host, port, timeout=timeout)
        with client:
            if settings["SMTP_SECURITY"] == "starttls":
                client.starttls(context=context)
            if settings["SMTP_USER"]:
                client.login(settings["SMTP_USER"], settings["SMTP_PASSWORD"] or "")
            client.send_message(message)
