"""``redact_url``: store URLs are printed (replay status, forget) without any password."""

from __future__ import annotations

import pytest

from projections.registry import redact_url


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://u:s3cret@h/db", "postgresql://u:***@h/db"),
    ("postgresql://u:p@ss@h/db", "postgresql://u:***@h/db"),  # an unescaped @ in the password
    ("clickhouse://:s3cret@h:9000/careledger", "clickhouse://:***@h:9000/careledger"),
    ("postgresql://u:s3cret@h1,h2/db", "postgresql://u:***@h1,h2/db"),
    ("postgresql+psycopg://u:p%40ss@h:5432/db?sslmode=require", "postgresql+psycopg://u:***@h:5432/db?sslmode=require"),
    ("postgresql://h/db?user=u&password=s3cret", "postgresql://h/db?user=u&password=***"),
    ("clickhouse://h/db?Secret=s3cret&pwd=s3cret&token=s3cret&pass=s3cret&compression=lz4",
     "clickhouse://h/db?Secret=***&pwd=***&token=***&pass=***&compression=lz4"),
    ("postgresql://u:p?ss@h/db?sslpassword=s3cret", "postgresql://u:***@h/db?sslpassword=***"),
    ("sqlite:////var/lib/careledger/projections.sqlite3", "sqlite:////var/lib/careledger/projections.sqlite3"),
    ("clickhouse://default@localhost:9000/careledger", "clickhouse://default@localhost:9000/careledger"),
])
def test_no_password_is_shown(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "s3cret" not in redact_url(url) and "ss@" not in redact_url(url)


def test_query_credentials_and_unparsable_urls_are_redacted() -> None:
    assert redact_url("weird+x://h/db?x=1&password=s3cret&token=") == "weird+x://h/db?x=1&password=***&token=***"
    assert redact_url("postgresql://u:s3cret@h:port/db") == "postgresql://u:***@h:port/db"
