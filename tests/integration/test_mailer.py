"""The notices' SMTP client against a real aiosmtpd server (tests/smtp_tls_server.py) requiring STARTTLS and
a log-in, with a certificate made for the test (as a city's own mail server might have)."""
import datetime
import email
import email.policy
import ipaddress
import mailbox
import smtplib
import ssl
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from services.notices.mailer import Mailer
from support import free_port

USER, PASSWORD = "shiori", "a-mail-password"


def self_signed_certificate(folder):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                  critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    certificate_file, key_file = folder / "mail.pem", folder / "mail.key"
    certificate_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return certificate_file, key_file


@pytest.fixture
def tls_server(tmp_path):
    certificate_file, key_file = self_signed_certificate(tmp_path)
    maildir, port = tmp_path / "mail", free_port()
    server = subprocess.Popen([sys.executable, str(Path(__file__).parent.parent / "smtp_tls_server.py"), str(port),
                               str(certificate_file), str(key_file), str(maildir), USER, PASSWORD],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        yield SimpleNamespace(port=port, ca_file=str(certificate_file),
                              received=lambda: list(mailbox.Maildir(maildir, create=False)) if maildir.exists() else [])
    finally:
        server.terminate()
        server.wait(10)


def mailer(server, **overrides):
    provider = Mailer()
    provider.container = SimpleNamespace(config={
        "SMTP_HOST": "127.0.0.1", "SMTP_PORT": server.port, "SMTP_SECURITY": "starttls", "SMTP_USER": USER,
        "SMTP_PASSWORD": PASSWORD, "SMTP_TIMEOUT": 10, "SMTP_CA_FILE": server.ca_file, **overrides})
    provider.setup()
    return provider.send


def message():
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "library@example.jp", "reader@example.jp", "ご予約の資料"
    mail.set_content("本文です")
    return mail


@pytest.mark.privacy(12)
def test_mail_goes_over_starttls_with_a_log_in_and_a_checked_certificate(tls_server):
    mailer(tls_server)(message())
    [received] = tls_server.received()
    parsed = email.message_from_bytes(received.as_bytes(), policy=email.policy.default)
    assert (parsed["To"], parsed["Subject"], parsed.get_content().strip()) == \
        ("reader@example.jp", "ご予約の資料", "本文です")


@pytest.mark.parametrize("overrides, failure", [
    ({"SMTP_CA_FILE": ""}, ssl.SSLCertVerificationError),   # a certificate no known CA signed
    ({"SMTP_PASSWORD": "wrong"}, smtplib.SMTPAuthenticationError),
    ({"SMTP_SECURITY": "none", "SMTP_USER": ""}, smtplib.SMTPResponseException),  # the server insists on TLS
])
@pytest.mark.privacy(12)
def test_mail_is_not_sent_to_an_unchecked_server_or_without_the_right_log_in(tls_server, overrides, failure):
    with pytest.raises(failure):
        mailer(tls_server, **overrides)(message())
    assert tls_server.received() == []
