#!/bin/sh
# Creates the raw and summaries buckets, idempotently (--ignore-existing).
set -eu
mc alias set local "$MINIO_URL" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null
for b in $BUCKETS; do
	mc mb --ignore-existing "local/$b"
done
