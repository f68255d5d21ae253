"""The external-Kafka settings reach the faust worker (processors/kafka_auth.py) as they reach
kafka-python (Settings.kafka_client_options)."""

from __future__ import annotations

import dataclasses
import ssl

import faust
import pytest

from careledger.settings import Settings
from processors.kafka_auth import faust_broker_options


def _settings(**security: str) -> Settings:
    base = Settings.from_env()
    return dataclasses.replace(base, kafka_bootstrap="k1:9093, k2:9093,k3:9093", kafka_security=security)


def test_plaintext_several_bootstrap_servers() -> None:
    options = faust_broker_options(_settings())
    assert options == {"broker": ["kafka://k1:9093", "kafka://k2:9093", "kafka://k3:9093"]}
    assert faust.App("t", **options).conf.broker[1].host == "k2"


def test_sasl_scram_over_tls() -> None:
    settings = _settings(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                         sasl_plain_username="careledger", sasl_plain_password="pw")
    creds = faust_broker_options(settings)["broker_credentials"]
    assert isinstance(creds, faust.SASLCredentials)
    assert (creds.protocol.value, creds.mechanism.value) == ("SASL_SSL", "SCRAM-SHA-512")
    assert (creds.username, creds.password) == ("careledger", "pw")
    assert isinstance(creds.ssl_context, ssl.SSLContext)
    assert creds.ssl_context.verify_mode == ssl.CERT_REQUIRED and creds.ssl_context.check_hostname
    # and kafka-python gets the same values
    assert settings.kafka_client_options()["sasl_mechanism"] == "SCRAM-SHA-512"
    assert settings.kafka_client_options()["bootstrap_servers"] == "k1:9093, k2:9093,k3:9093"


def test_sasl_plaintext_and_tls_only() -> None:
    creds = faust_broker_options(_settings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256",
                                           sasl_plain_username="u", sasl_plain_password="p"))["broker_credentials"]
    assert creds.protocol.value == "SASL_PLAINTEXT" and creds.ssl_context is None
    tls = faust_broker_options(_settings(security_protocol="SSL"))["broker_credentials"]
    assert isinstance(tls, faust.SSLCredentials) and tls.protocol.value == "SSL"


def test_unknown_protocol_is_refused() -> None:
    with pytest.raises(SystemExit, match="SECURITY_PROTOCOL"):
        faust_broker_options(_settings(security_protocol="KERBEROS"))
