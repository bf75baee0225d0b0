"""An SMTP server that requires STARTTLS and a log-in, with the given certificate, keeping what it receives in
a maildir: ``python tests/smtp_tls_server.py PORT CERT KEY MAILDIR USER PASSWORD``. A process of its own,
because under eventlet one process runs one asyncio loop, and the suite's plain SMTP server has it."""
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult


def main(port, certificate, key, maildir, user, password):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate, key)

    def authenticate(_server, _session, _envelope, _mechanism, credentials):
        # handled=False: aiosmtpd itself answers a failure (535), as a real server does
        return AuthResult(success=(credentials.login, credentials.password) == (user.encode(), password.encode()),
                          handled=False)

    controller = Controller(Mailbox(maildir), hostname="127.0.0.1", port=int(port), tls_context=context,
                            require_starttls=True, authenticator=authenticate, auth_require_tls=True)
    controller.start()
    print("ready", flush=True)
    try:
        threading.Event().wait()
    finally:
        controller.stop()


if __name__ == "__main__":
    main(*sys.argv[1:])
