"""The same Kafka connection settings for the faust/aiokafka worker as for kafka-python clients.

kafka-python (publisher, lag probe, topic admin) takes ``Settings.kafka_client_options()``
verbatim.  Faust wants a list of broker URLs and a credentials object instead; this module maps
``CARELEDGER_KAFKA_BOOTSTRAP`` (comma-separated) and ``CARELEDGER_KAFKA_SECURITY_PROTOCOL`` /
``SASL_*`` / ``SSL_*`` onto ``faust.App(broker=..., broker_credentials=...)``:

| security_protocol | faust credentials |
|---|---|
| PLAINTEXT (default) | none |
| SSL | ``SSLCredentials`` (CA file, optional client certificate = mutual TLS) |
| SASL_PLAINTEXT | ``SASLCredentials`` (mechanism PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512) |
| SASL_SSL | ``SASLCredentials`` with the TLS context above |
"""

from __future__ import annotations

import ssl
from typing import Any

from careledger.settings import Settings


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """A verifying client TLS context from ``SSL_CAFILE`` (system CAs when unset) and, for
    mutual TLS, ``SSL_CERTFILE`` + ``SSL_KEYFILE`` (+ ``SSL_PASSWORD`` for an encrypted key)."""
    sec = settings.kafka_security
    context = ssl.create_default_context(purpose=ssl.Purpose.SERVER_AUTH, cafile=sec.get("ssl_cafile"))
    if sec.get("ssl_certfile"):
        context.load_cert_chain(sec["ssl_certfile"], sec.get("ssl_keyfile"), sec.get("ssl_password"))
    return context


def faust_broker_options(settings: Settings) -> dict[str, Any]:
    """``broker`` and (when secured) ``broker_credentials`` keyword arguments for ``faust.App``."""
    import faust

    options: dict[str, Any] = {"broker": [f"kafka://{server}" for server in settings.kafka_bootstrap_servers]}
    sec = settings.kafka_security
    protocol = sec.get("security_protocol", "PLAINTEXT").upper()
    if protocol == "PLAINTEXT":
        return options
    if protocol == "SSL":
        options["broker_credentials"] = faust.SSLCredentials(ssl_context(settings))
    elif protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        options["broker_credentials"] = faust.SASLCredentials(
            username=sec.get("sasl_plain_username"),
            password=sec.get("sasl_plain_password"),
            mechanism=sec.get("sasl_mechanism", "PLAIN").upper(),
            ssl_context=ssl_context(settings) if protocol == "SASL_SSL" else None,
        )
    else:
        raise SystemExit(f"CARELEDGER_KAFKA_SECURITY_PROTOCOL={protocol!r}: use PLAINTEXT, SSL, "
                         "SASL_PLAINTEXT or SASL_SSL")
    return options
