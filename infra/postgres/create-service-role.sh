#!/bin/sh
# Runs once, when the postgres container initialises an empty data directory. It
# creates the role the facegate processes connect as: it may read and write rows,
# and the processes grant it those rights after migrating as the owner (facegate).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v password="$FACEGATE_APP_PASSWORD" <<'SQL'
create role facegate_app login password :'password';
SQL
