#!/usr/bin/env bash
# Run a command beside a throw-away PostgreSQL cluster, for the PostgreSQL gallery's tests and benchmark:
#
#   bash scripts/with_postgres.sh python3 -m pytest test -k postgres
#
# * initdb in a new temporary folder; the server runs as an unprivileged user (postgres refuses root:
#   as root, the system user `facepg` is created when missing and the server runs as it);
# * it listens on 127.0.0.1 (a free port) and on a unix socket in that folder, nowhere else;
# * TLS with a self-signed certificate made by openssl (when openssl is there), so sslmode=require and
#   verify-full can be tested; passwords (scram-sha-256) for every connection, kept in a libpq
#   password file, never in a URL;
# * stopped and deleted when the command ends, pass or fail (and on Ctrl-C).
#
# The command sees:
#   FACE_RECOGNITION_TEST_POSTGRES_URL      a gallery URL without password (postgresql://face_robot@127.0.0.1:PORT/face_gallery)
#   PGPASSFILE                              the password file the URL's password comes from
#   FACE_RECOGNITION_TEST_POSTGRES_CTL      pg_ctl for this cluster (the tests stop and restart it)
#   FACE_RECOGNITION_TEST_POSTGRES_ADMIN_URL the cluster's superuser (scripts/postgres_forget_traces.py: CHECKPOINT)
#   FACE_RECOGNITION_TEST_POSTGRES_DATA     its data folder
#   FACE_RECOGNITION_TEST_POSTGRES_ROOTCERT the server's self-signed certificate (only with TLS)
#   FACE_RECOGNITION_REQUIRE_POSTGRES=1     so the PostgreSQL tests fail instead of skipping
#
# Where no PostgreSQL server is installed (initdb neither on PATH nor in /usr/lib/postgresql/*/bin),
# the command runs without those, after one line saying the PostgreSQL tests will skip; with
# FACE_RECOGNITION_REQUIRE_POSTGRES=1 (CI) that is a failure instead. A server that is installed but
# cannot start is always a failure. The command's exit status is this script's.
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: with_postgres.sh COMMAND [ARGS...]" >&2; exit 2; }

bindir=""
if command -v initdb >/dev/null 2>&1; then
  bindir=$(dirname "$(readlink -f "$(command -v initdb)")")
else
  for candidate in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$candidate/initdb" ] && { bindir=$candidate; break; }
  done
fi
if [ -z "$bindir" ]; then
  if [ "${FACE_RECOGNITION_REQUIRE_POSTGRES:-0}" = 1 ]; then
    echo "with_postgres: no PostgreSQL server installed (no initdb; Debian: apt-get install postgresql-15)," \
         "and FACE_RECOGNITION_REQUIRE_POSTGRES=1" >&2
    exit 1
  fi
  echo "with_postgres: PostgreSQL gallery tests skipped: no PostgreSQL server here (no initdb on PATH or in /usr/lib/postgresql/*/bin)"
  "$@"
  exit $?
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/face-pg.XXXXXX")
chmod 0711 "$tmp"   # the server's user must reach its folders in here; nobody may list them
mkdir -p "$tmp/data" "$tmp/socket" "$tmp/client"
chmod 0700 "$tmp/client"
as_server=()
if [ "$(id -u)" = 0 ]; then
  server_user=${FACE_RECOGNITION_POSTGRES_USER:-facepg}
  if ! id -u "$server_user" >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$server_user"
  fi
  chown "$server_user" "$tmp/data" "$tmp/socket"
  as_server=(runuser -u "$server_user" --)
fi
log="$tmp/socket/server.log"
pg_ctl=("${as_server[@]}" "$bindir/pg_ctl" -D "$tmp/data" -l "$log" -w -t 60)

cleanup() {
  "${pg_ctl[@]}" stop -m immediate >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

password() { od -An -N18 -tx1 /dev/urandom | tr -d ' \n'; }
admin_password=$(password)
robot_password=$(password)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

fail() {
  echo "with_postgres: $*" >&2
  [ -f "$log" ] && tail -n 20 "$log" >&2
  exit 1
}

printf '%s\n' "$admin_password" > "$tmp/socket/pwfile"
[ ${#as_server[@]} -gt 0 ] && chown "$server_user" "$tmp/socket/pwfile"
"${as_server[@]}" "$bindir/initdb" -D "$tmp/data" -U facepg_admin --pwfile="$tmp/socket/pwfile" \
  --auth=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >"$tmp/client/initdb.log" 2>&1 \
  || { cat "$tmp/client/initdb.log" >&2; fail "initdb failed"; }
rm -f "$tmp/socket/pwfile"

tls=off
if command -v openssl >/dev/null 2>&1; then
  if openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=localhost" \
       -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
       -keyout "$tmp/client/server.key" -out "$tmp/client/server.crt" >/dev/null 2>&1; then
    cp "$tmp/client/server.crt" "$tmp/client/server.key" "$tmp/data/"
    rm -f "$tmp/client/server.key"
    [ ${#as_server[@]} -gt 0 ] && chown "$server_user" "$tmp/data/server.crt" "$tmp/data/server.key"
    chmod 0600 "$tmp/data/server.key"
    tls=on
  fi
fi

{
  echo "listen_addresses = '127.0.0.1'"
  echo "port = $port"
  echo "unix_socket_directories = '$tmp/socket'"
  echo "ssl = $tls"
  echo "max_connections = 200"
  echo "shared_buffers = 128MB"
} >> "$tmp/data/postgresql.conf"

"${pg_ctl[@]}" start >/dev/null || fail "the PostgreSQL server did not start"

admin_pass_file="$tmp/client/pgpass"
printf '*:*:*:facepg_admin:%s\n*:*:*:face_robot:%s\n' "$admin_password" "$robot_password" > "$admin_pass_file"
chmod 0600 "$admin_pass_file"
export PGPASSFILE="$admin_pass_file"
psql_admin=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U facepg_admin -d postgres)
command -v psql >/dev/null 2>&1 || psql_admin[0]="$bindir/psql"
# The robot's role owns its database and nothing else: it is no superuser (the tests run as it).
"${psql_admin[@]}" -c "CREATE ROLE face_robot LOGIN PASSWORD '$robot_password'" \
  -c "CREATE DATABASE face_gallery OWNER face_robot" >/dev/null || fail "could not create the test role and database"

export FACE_RECOGNITION_TEST_POSTGRES_URL="postgresql://face_robot@127.0.0.1:$port/face_gallery"
export FACE_RECOGNITION_TEST_POSTGRES_CTL="${pg_ctl[*]}"
export FACE_RECOGNITION_TEST_POSTGRES_ADMIN_URL="postgresql://facepg_admin@127.0.0.1:$port/face_gallery"
export FACE_RECOGNITION_TEST_POSTGRES_DATA="$tmp/data"
export FACE_RECOGNITION_REQUIRE_POSTGRES=1
if [ "$tls" = on ]; then
  export FACE_RECOGNITION_TEST_POSTGRES_ROOTCERT="$tmp/client/server.crt"
fi
echo "with_postgres: PostgreSQL $("$bindir/postgres" --version | grep -oE "[0-9]+(\.[0-9]+)+" | head -n 1) on 127.0.0.1:$port (TLS $tls), data in $tmp/data"
status=0
"$@" || status=$?
exit $status
