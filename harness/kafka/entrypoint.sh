#!/bin/sh
# Entrypoint of the locally built cohort-kafka image. Like the apache/kafka image, it takes the
# broker's settings from KAFKA_* variables (KAFKA_NODE_ID=1 becomes node.id=1), formats a fresh
# log dir in KRaft mode the first time, and runs the broker in the foreground.
set -eu
props=/opt/kafka/config/server.properties
mkdir -p /opt/kafka/config
: > "$props"
env | while IFS='=' read -r name value; do
  case "$name" in
    KAFKA_HEAP_OPTS|KAFKA_OPTS|KAFKA_JVM_OPTS) ;;
    KAFKA_*)
      key="$(echo "${name#KAFKA_}" | tr 'A-Z_' 'a-z.')"
      echo "$key=$value" >> "$props"
      ;;
  esac
done
grep -q '^log.dirs=' "$props" || echo "log.dirs=/var/lib/kafka/data" >> "$props"
dirs="$(sed -n 's/^log.dirs=//p' "$props")"
if [ ! -f "$dirs/meta.properties" ]; then
  id="${CLUSTER_ID:-$(java -cp '/opt/kafka/libs/*' kafka.tools.StorageTool random-uuid)}"
  java -cp '/opt/kafka/libs/*' kafka.tools.StorageTool format -t "$id" -c "$props" >/dev/null
fi
exec java ${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g} -XX:+UseSerialGC -XX:+ExitOnOutOfMemoryError \
  -Djava.awt.headless=true -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties \
  ${KAFKA_OPTS:-} -cp '/opt/kafka/libs/*' kafka.Kafka "$props"
