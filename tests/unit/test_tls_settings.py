"""TLS settings: what each one turns on, and that a setting that cannot be honoured stops a process from
starting rather than leaving it in plain text."""
import ssl
from types import SimpleNamespace

import pytest
from nameko.exceptions import ConfigurationError

from services.gateway.entrypoints import nests_deeper_than
from services.notices.mailer import Mailer
from shiori.config import load_config
from shiori.tls import broker_ssl_options, gateway_context


def test_an_amqps_url_checks_the_brokers_certificate_and_host_name():
    assert broker_ssl_options("amqps://gateway:pw@broker.city.example:5671/shiori", "/etc/shiori/ca.pem") == {
        "cert_reqs": ssl.CERT_REQUIRED, "ca_certs": "/etc/shiori/ca.pem", "server_hostname": "broker.city.example"}
    assert broker_ssl_options("amqps://broker.city.example/shiori")["ca_certs"] is None  # the system's CAs


def test_a_plain_amqp_url_has_no_tls_and_a_ca_for_it_is_refused():
    assert broker_ssl_options("amqp://127.0.0.1:5672/shiori") is None
    with pytest.raises(ConfigurationError, match="amqps://"):
        broker_ssl_options("amqp://127.0.0.1:5672/shiori", "/etc/shiori/ca.pem")


def test_every_service_configuration_carries_the_brokers_tls_options():
    environ = {"AMQP_URI": "amqps://loans:pw@broker.city.example/shiori", "SHIORI_BROKER_CA": "/ca.pem"}
    for service in ("loans", "gateway", "opac"):
        assert load_config(service, environ)["AMQP_SSL"]["server_hostname"] == "broker.city.example"
    assert "AMQP_SSL" not in load_config("loans", {"AMQP_URI": "amqp://loans:pw@127.0.0.1/shiori"})


def test_https_needs_a_certificate_and_its_key_that_load(tmp_path):
    assert gateway_context({}) is None  # plain HTTP, the make run default
    with pytest.raises(ConfigurationError, match="both"):
        gateway_context({"TLS_CERT": "/etc/shiori/cert.pem"})
    with pytest.raises(ConfigurationError, match="cannot load the TLS certificate"):
        gateway_context({"TLS_CERT": str(tmp_path / "missing.pem"), "TLS_KEY": str(tmp_path / "missing.key")})


def test_the_opac_takes_the_staff_gateways_certificate_unless_given_its_own():
    shared = {"SHIORI_TLS_CERT": "/c.pem", "SHIORI_TLS_KEY": "/k.pem"}
    assert load_config("opac", shared)["TLS_CERT"] == "/c.pem"
    assert load_config("opac", {**shared, "SHIORI_OPAC_TLS_CERT": "/opac.pem"})["TLS_CERT"] == "/opac.pem"


def mailer(security):
    provider = Mailer()
    provider.container = SimpleNamespace(config={"SMTP_HOST": "127.0.0.1", "SMTP_PORT": 25, "SMTP_TIMEOUT": 10,
                                                 "SMTP_SECURITY": security})
    provider.setup()
    return provider


@pytest.mark.privacy(12)
@pytest.mark.parametrize("security", ["ssl", "STARTTLS", "yes", "", None])
def test_an_unknown_smtp_security_refuses_to_start_rather_than_send_in_plain_text(security):
    with pytest.raises(ConfigurationError, match="SHIORI_SMTP_SECURITY"):
        mailer(security)


@pytest.mark.parametrize("security", ["none", "starttls", "tls"])
def test_the_known_smtp_security_values_start(security):
    assert mailer(security).settings["SMTP_SECURITY"] == security


def test_json_nesting_is_measured_without_recursion():
    four_levels = {"a": [1, {"b": []}]}
    assert not nests_deeper_than(four_levels, 4)
    assert nests_deeper_than(four_levels, 3)
    deep = []
    for _ in range(100_000):
        deep = [deep]
    assert nests_deeper_than({"a": deep}, 32)
