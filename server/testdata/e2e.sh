#!/usr/bin/env bash
# Zero-touch onboarding with the tools a user has: openssl for keys, CSRs and
# certificates, curl for EST and the REST API, mosquitto_pub/sub for MQTT.
# Run by TestOutsideTools against a live node; needs API, TOKEN, EST, MQTT_HOST,
# MQTT_PORT and WORK in the environment.
set -euo pipefail
cd "$WORK"
say() { printf '## %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
api() { curl -fsS -H "Authorization: Bearer $TOKEN" "$@"; }
pem_json() { awk '{printf "%s\\n", $0}' "$1"; }
# poll CMD... until it succeeds (30 s and more: CI machines are loaded)
poll() { for _ in $(seq 1 300); do if "$@"; then return 0; fi; sleep 0.1; done; return 1; }

say "the server CA, to trust the device plane"
api "$API/api/v1/ca/server" > server-ca.pem
openssl x509 -in server-ca.pem -noout -subject

say "cacerts over EST"
curl -fsS --cacert server-ca.pem "$EST/.well-known/est/cacerts" | openssl base64 -d | openssl pkcs7 -inform DER -print_certs > cacerts.pem
[ "$(grep -c 'BEGIN CERTIFICATE' cacerts.pem)" = 2 ] || fail "cacerts should hold the device CA and the server CA"

say "a manufacturer CA and its enrollment group"
openssl ecparam -name prime256v1 -genkey -noout -out mfr.key
openssl req -x509 -new -key mfr.key -subj "/CN=Shell Devices CA/O=Shell Devices" -days 3650 \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out mfr.pem
api -H 'Content-Type: application/json' -d "{\"name\":\"shell\",\"ca_pem\":\"$(pem_json mfr.pem)\",\"models\":[\"gw-100\"],\"firmware\":{\"gw-100\":[\"1.2.0\"]}}" \
  "$API/api/v1/enrollment-groups" > group.json

factory() { # serial → factory-$serial.{key,pem}
  openssl ecparam -name prime256v1 -genkey -noout -out "factory-$1.key"
  openssl req -new -key "factory-$1.key" -subj "/CN=factory $1/serialNumber=$1" -out "factory-$1.csr"
  printf 'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n' > ext.cnf
  openssl x509 -req -in "factory-$1.csr" -CA mfr.pem -CAkey mfr.key -set_serial "0x$(openssl rand -hex 12)" -days 365 -extfile ext.cnf -out "factory-$1.pem" 2>/dev/null
}
enroll() { # serial keyfile → prints HTTP status, writes chain-$serial.pem on success
  openssl req -new -key "$2" -subj "/CN=ignored" -outform DER | openssl base64 > "csr-$1.b64"
  curl -sS -o "resp-$1.b64" -w '%{http_code}' --cacert server-ca.pem --cert "factory-$1.pem" --key "factory-$1.key" \
    -H 'Content-Type: application/pkcs10' --data-binary "@csr-$1.b64" "$EST/.well-known/est/simpleenroll"
}
device_id() { openssl x509 -in "$1" -noout -subject -nameopt RFC2253 | sed -e 's/^subject=//' -e 's/.*CN=\([^,]*\).*/\1/'; }
state() { api "$API/api/v1/devices/$1" | grep -o '"state":"[a-z]*"' | head -1 | cut -d'"' -f4; }

say "zero-touch enrollment with openssl and curl"
factory SH-1
openssl ecparam -name prime256v1 -genkey -noout -out dev1.key
code=$(enroll SH-1 dev1.key); [ "$code" = 200 ] || fail "enroll: HTTP $code: $(cat resp-SH-1.b64)"
openssl base64 -d -in resp-SH-1.b64 | openssl pkcs7 -inform DER -print_certs > chain-SH-1.pem
openssl x509 -in chain-SH-1.pem -out dev1.pem
id1=$(device_id dev1.pem)
echo "device $id1"
openssl x509 -in dev1.pem -noout -ext extendedKeyUsage | grep -q 'TLS Web Client Authentication' || fail "no client-auth usage"
openssl verify -CAfile <(sed -n '/BEGIN/,/END/p' cacerts.pem | awk 'BEGIN{n=0} /BEGIN/{n++} n==1') dev1.pem

mq() { mosquitto_pub -h "$MQTT_HOST" -p "$MQTT_PORT" --cafile server-ca.pem --cert "$1" --key "$2" -i "$3" -q 1 "${@:4}"; }

say "attributes over MQTT, then active"
mq dev1.pem dev1.key "$id1" -t "dev/$id1/attributes" -m '{"model":"gw-100","firmware":"1.2.0","hardware":"revA"}'
poll test "$(state "$id1")" = active || fail "device not active: $(state "$id1")"

say "telemetry over MQTT, readable from the API"
mq dev1.pem dev1.key "$id1" -t "dev/$id1/telemetry" -m '{"ts":"2026-11-27T10:00:00Z","metrics":{"temperature":48.5,"cpu":0.31}}'
poll sh -c "curl -fsS -H 'Authorization: Bearer $TOKEN' '$API/api/v1/devices/$id1/telemetry/latest' | grep -q '\"metric\":\"temperature\"'" || fail "telemetry not readable"

say "refused: another device's topic, the wrong client ID, a wildcard subscription"
mq dev1.pem dev1.key "$id1" -t "dev/d-someoneelse/telemetry" -m '{"metrics":{"cpu":1}}' || true
if mq dev1.pem dev1.key "not-$id1" -t "dev/$id1/telemetry" -m '{"metrics":{"cpu":1}}' 2>/dev/null; then fail "wrong client ID accepted"; fi
mosquitto_sub -h "$MQTT_HOST" -p "$MQTT_PORT" --cafile server-ca.pem --cert dev1.pem --key dev1.key -i "$id1" -t '#' -C 1 -W 2 >/dev/null 2>&1 || true
poll sh -c "curl -fsS -H 'Authorization: Bearer $TOKEN' '$API/api/v1/security-events?device=$id1' | grep -q acl_denied" || fail "no acl_denied security event"
poll sh -c "curl -fsS -H 'Authorization: Bearer $TOKEN' '$API/api/v1/security-events?device=$id1' | grep -q client_id_mismatch" || fail "no client_id_mismatch security event"

say "unapproved firmware is quarantined with its reason"
factory SH-2
openssl ecparam -name prime256v1 -genkey -noout -out dev2.key
code=$(enroll SH-2 dev2.key); [ "$code" = 200 ] || fail "enroll 2: HTTP $code"
openssl base64 -d -in resp-SH-2.b64 | openssl pkcs7 -inform DER -print_certs | openssl x509 -out dev2.pem
id2=$(device_id dev2.pem)
# Entering quarantine closes the session (so the device learns its new
# rights when it reconnects): mosquitto_pub may see the connection go right
# after its PUBACK.
mq dev2.pem dev2.key "$id2" -t "dev/$id2/attributes" -m '{"model":"gw-100","firmware":"0.9.0"}' || true
poll test "$(state "$id2")" = quarantined || fail "device 2 not quarantined: $(state "$id2")"
api "$API/api/v1/devices/$id2" | grep -q 'firmware \\"0.9.0\\" is not approved' || fail "no quarantine reason"

say "a cloned factory identity with a new key is refused"
openssl ecparam -name prime256v1 -genkey -noout -out clone.key
code=$(enroll SH-1 clone.key); [ "$code" = 403 ] || fail "clone: HTTP $code"
api "$API/api/v1/security-events?device=$id1" | grep -q suspected_clone || fail "no suspected_clone event"
# The default quarantine policy quarantines the device whose identity was
# cloned, at once; an operator releases it.
poll sh -c "curl -fsS -H 'Authorization: Bearer $TOKEN' '$API/api/v1/devices/$id1' | grep -q '\"state\":\"quarantined\"'" || fail "device 1 not quarantined after the clone: $(state "$id1")"
api "$API/api/v1/devices/$id1" | grep -q 'quarantine rule suspected_clone' || fail "no quarantine rule in the reason"
api -X POST "$API/api/v1/devices/$id1/release" >/dev/null
test "$(state "$id1")" = active || fail "device 1 not released: $(state "$id1")"

say "a wrong content type is refused"
code=$(curl -sS -o /dev/null -w '%{http_code}' --cacert server-ca.pem --cert factory-SH-2.pem --key factory-SH-2.key \
  -H 'Content-Type: text/plain' --data-binary "@csr-SH-2.b64" "$EST/.well-known/est/simpleenroll")
[ "$code" = 415 ] || fail "wrong content type: HTTP $code"

say "a command reaches the device: mosquitto_sub, subscribed as the device, receives it"
mosquitto_sub -h "$MQTT_HOST" -p "$MQTT_PORT" --cafile server-ca.pem --cert dev1.pem --key dev1.key -i "$id1" -c -q 1 -t "dev/$id1/cmd/req" -C 1 -W 20 > cmd.json 2>sub.err &
sub=$!
poll sh -c "curl -fsS -H 'Authorization: Bearer $TOKEN' '$API/api/v1/devices/$id1' | grep -q '\"online\":true'" || fail "subscriber not online"
sleep 0.3 # the SUBSCRIBE follows the CONNECT
api -H 'Content-Type: application/json' -d '{"name":"ping","timeout_seconds":2}' "$API/api/v1/devices/$id1/commands" >/dev/null 2>&1 || true
wait $sub || fail "mosquitto_sub saw no command: $(cat sub.err)"
grep -q '"name":"ping"' cmd.json || fail "command payload: $(cat cmd.json)"

say "revoked: the certificate is refused"
api -X POST "$API/api/v1/devices/$id1/revoke" >/dev/null
if mq dev1.pem dev1.key "$id1" -t "dev/$id1/telemetry" -m '{"metrics":{"cpu":1}}' 2>/dev/null; then fail "revoked certificate accepted"; fi
echo "all good"
