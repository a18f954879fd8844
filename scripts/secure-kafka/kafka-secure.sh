#!/bin/sh
# The secured Kafka of docker-compose.secure.yml, run inside the apache/kafka image.
#
#   kafka-secure.sh certs   one-shot: a CA and a broker certificate (SAN kafka, localhost,
#                           127.0.0.1) made with the JDK's keytool; kept across restarts
#   kafka-secure.sh start   write server.properties, format storage with one SCRAM user per
#                           principal (first start only), then run the broker
#
# Listeners: SASL_SSL on :9092 (containers, kafka:9092) and :19092 (the host); the KRaft
# controller and an INTERNAL plaintext listener bind to the container's loopback only, so
# their principal User:ANONYMOUS (a super user: the broker itself, the healthcheck) cannot
# be reached from any other container.
#
# streamrec.app.kafka_secure does the same for the local launcher, in Python; keep them alike.
set -eu

TLS_DIR=${KAFKA_SECURE_TLS_DIR:-/etc/kafka/secrets}  # keystore, truststore: kafka only
CA_DIR=${KAFKA_SECURE_CA_DIR:-/mnt/shared/config}    # ca.pem: read-only in every service
KAFKA_BIN=${KAFKA_SECURE_BIN:-/opt/kafka/bin}
PRINCIPALS="admin app ingest score train"

need() {
  eval "value=\${$1:-}"
  [ -n "$value" ] || { echo "kafka-secure.sh: $1 is not set (see scripts/secure-kafka/make-env.sh)" >&2; exit 2; }
}

certs() {
  need KAFKA_SSL_STORE_PASSWORD
  if [ -s "$TLS_DIR/broker.p12" ] && [ -s "$TLS_DIR/truststore.p12" ] && [ -s "$CA_DIR/ca.pem" ]; then
    echo "TLS files exist; keeping them (delete the kafka-tls and kafka-ca volumes to renew)"
    return
  fi
  work=$(mktemp -d)
  pass="$KAFKA_SSL_STORE_PASSWORD"
  store="-storetype PKCS12 -storepass $pass -keypass $pass"
  key="-keyalg EC -groupname secp256r1 -validity 365"
  rm -f "$TLS_DIR/broker.p12" "$TLS_DIR/truststore.p12"
  # shellcheck disable=SC2086  # $store and $key are option lists
  keytool -genkeypair -alias ca -dname "CN=streamrec compose CA" -ext bc:c $key \
    -keystore "$work/ca.p12" $store
  keytool -exportcert -rfc -alias ca -keystore "$work/ca.p12" -storepass "$pass" > "$work/ca.pem"
  keytool -genkeypair -alias broker -dname "CN=kafka" $key -keystore "$TLS_DIR/broker.p12" $store
  keytool -certreq -alias broker -keystore "$TLS_DIR/broker.p12" $store \
    | keytool -gencert -alias ca -keystore "$work/ca.p12" $store -rfc -validity 365 \
        -ext "SAN=dns:kafka,dns:localhost,ip:127.0.0.1" -ext eku=serverAuth > "$work/broker.pem"
  cat "$work/broker.pem" "$work/ca.pem" > "$work/chain.pem"
  keytool -importcert -noprompt -alias broker -file "$work/chain.pem" \
    -keystore "$TLS_DIR/broker.p12" $store
  keytool -importcert -noprompt -alias ca -file "$work/ca.pem" \
    -keystore "$TLS_DIR/truststore.p12" $store
  chmod 600 "$TLS_DIR/broker.p12" "$TLS_DIR/truststore.p12"
  cp "$work/ca.pem" "$CA_DIR/ca.pem" && chmod 644 "$CA_DIR/ca.pem"
  rm -rf "$work"  # the CA key signed one certificate; nothing else may use it
  echo "TLS files written: $TLS_DIR/broker.p12, $CA_DIR/ca.pem"
}

start() {
  need KAFKA_SSL_STORE_PASSWORD
  need CLUSTER_ID
  for p in $PRINCIPALS; do need "SCRAM_PASSWORD_$(echo "$p" | tr a-z A-Z)"; done
  config=/tmp/server.properties
  umask 077  # the config holds the keystore password
  jaas='org.apache.kafka.common.security.scram.ScramLoginModule required;'
  cat > "$config" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@localhost:9093
controller.listener.names=CONTROLLER
listeners=SASL_SSL://:9092,HOST://:19092,CONTROLLER://localhost:9093,INTERNAL://localhost:9094
advertised.listeners=SASL_SSL://kafka:9092,HOST://localhost:${KAFKA_HOST_PORT:-9092},INTERNAL://localhost:9094
listener.security.protocol.map=SASL_SSL:SASL_SSL,HOST:SASL_SSL,CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT
inter.broker.listener.name=INTERNAL
sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=$jaas
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=$jaas
listener.name.host.scram-sha-512.sasl.jaas.config=$jaas
listener.name.host.scram-sha-256.sasl.jaas.config=$jaas
ssl.keystore.type=PKCS12
ssl.keystore.location=$TLS_DIR/broker.p12
ssl.keystore.password=$KAFKA_SSL_STORE_PASSWORD
ssl.key.password=$KAFKA_SSL_STORE_PASSWORD
ssl.truststore.type=PKCS12
ssl.truststore.location=$TLS_DIR/truststore.p12
ssl.truststore.password=$KAFKA_SSL_STORE_PASSWORD
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin;User:ANONYMOUS
allow.everyone.if.no.acl.found=false
log.dirs=${KAFKA_SECURE_DATA_DIR:-/var/lib/kafka/data}
auto.create.topics.enable=false
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
PROPS
  # SCRAM users exist from the first format on (KRaft has no other bootstrap path); a later
  # password change needs kafka-configs.sh --alter --add-config, or a fresh kafka-data volume.
  set --
  for mechanism in SCRAM-SHA-512 SCRAM-SHA-256; do
    for p in $PRINCIPALS; do
      eval "pw=\$SCRAM_PASSWORD_$(echo "$p" | tr a-z A-Z)"
      set -- "$@" --add-scram "$mechanism=[name=$p,password=$pw]"
    done
  done
  "$KAFKA_BIN/kafka-storage.sh" format --ignore-formatted -t "$CLUSTER_ID" -c "$config" "$@" \
    | sed 's/password=[^],]*/password=***/g'
  set --
  exec "$KAFKA_BIN/kafka-server-start.sh" "$config"
}

case "${1:-}" in
  certs) certs ;;
  start) start ;;
  *) echo "usage: kafka-secure.sh certs|start" >&2; exit 2 ;;
esac
