#!/bin/sh
# Print fresh random secrets for docker-compose.secure.yml, one VAR=value per line:
#
#   scripts/secure-kafka/make-env.sh > ~/.streamrec-secure.env   # outside the repository
#   chmod 600 ~/.streamrec-secure.env
#   docker compose --env-file ~/.streamrec-secure.env \
#       -f docker-compose.yml -f docker-compose.secure.yml up --build
set -eu
secret() { head -c 18 /dev/urandom | base64 | tr '+/' '-_'; }
echo "STREAMREC_SECURE_STORE_PASSWORD=$(secret)"
for principal in ADMIN APP INGEST SCORE TRAIN; do
  echo "STREAMREC_SECURE_${principal}_PASSWORD=$(secret)"
done
