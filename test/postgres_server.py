"""The PostgreSQL server the gallery tests use, when there is one.

``scripts/test.sh`` (through ``scripts/with_postgres.sh``) starts a throw-away cluster and exports
``FACE_RECOGNITION_TEST_POSTGRES_URL`` (no password in it: libpq reads it from ``$PGPASSFILE``),
``FACE_RECOGNITION_TEST_POSTGRES_CTL`` (pg_ctl for that cluster, for the restart test) and
``FACE_RECOGNITION_TEST_POSTGRES_ROOTCERT`` (its self-signed TLS certificate). Without a URL the
PostgreSQL tests skip, saying so; with ``FACE_RECOGNITION_REQUIRE_POSTGRES=1`` (CI) they fail instead.

Each test gets a schema of its own (``search_path`` in the URL), dropped afterwards.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import urllib.parse
import uuid

import pytest

URL_ENV = "FACE_RECOGNITION_TEST_POSTGRES_URL"
CTL_ENV = "FACE_RECOGNITION_TEST_POSTGRES_CTL"
ROOTCERT_ENV = "FACE_RECOGNITION_TEST_POSTGRES_ROOTCERT"
REQUIRE_ENV = "FACE_RECOGNITION_REQUIRE_POSTGRES"


def _unavailable(reason: str):
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason}, and {REQUIRE_ENV}=1")
    pytest.skip(reason)


def server_url() -> str:
    """The test server's database URL (skips, or fails under REQUIRE, when there is none)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable("psycopg 3 is not installed (pip install 'psycopg[binary]'), so the PostgreSQL gallery cannot be tested")
    url = os.environ.get(URL_ENV, "").strip()
    if not url:
        _unavailable(f"no PostgreSQL server for the tests: run them through `bash scripts/test.sh` or "
                     f"`bash scripts/with_postgres.sh ...` (a throw-away cluster), or set {URL_ENV}")
    return url


def with_params(url: str, **params: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query) + list(params.items())
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query, quote_via=urllib.parse.quote)))


def in_schema(url: str, schema: str) -> str:
    return with_params(url, options=f"-c search_path={schema}")


def connect(url: str):
    import psycopg

    return psycopg.connect(url, autocommit=True)


@pytest.fixture
def postgres_url():
    """A URL of an empty schema of its own on the test server; the schema is dropped afterwards."""
    url = server_url()
    schema = "t_" + uuid.uuid4().hex[:12]
    try:
        with connect(url) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
    except Exception as error:  # noqa: BLE001 - a configured server that does not answer is a failure
        pytest.fail(f"the test PostgreSQL server at {url} does not work: {error}")
    yield in_schema(url, schema)
    with connect(url) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def server_control() -> list[str]:
    """pg_ctl (with the cluster's data folder) for stopping and starting the test server, or skip."""
    command = os.environ.get(CTL_ENV, "").strip()
    if not command:
        _unavailable(f"{CTL_ENV} is not set: the test server cannot be stopped and restarted from here")
    return shlex.split(command)


def stop_server() -> None:
    subprocess.run(server_control() + ["stop", "-m", "fast"], check=True, capture_output=True, timeout=60)


def start_server() -> None:
    subprocess.run(server_control() + ["start"], check=True, capture_output=True, timeout=60)
