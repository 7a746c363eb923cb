#!/bin/sh
# run-hosts.sh N RUNDIR ADDR BIN: `make run HOSTS=N`. Starts ONE realm of N
# hosts on this machine: N cofferd processes h1..hN, each with two software
# vaults of its own (hI-a, hI-b: softvault serve, INSECURE) and a peer
# listener, all sharing one state database, an SQLite file in WAL mode
# (RUNDIR/hosts/cofferd.db; on one machine its writers queue on the file's
# lock; several machines share PostgreSQL instead, see host/OPERATIONS.md).
# The vaults are made as a deployment makes them: one provisioning key
# (coffer-provision keygen), each vault's identity signed with it
# (softvault init, identity; coffer-provision sign; softvault install).
# The hosts authenticate each other with certificates from the realm's peer
# CA (cofferd peer ca, peer cert). cofferd I listens on ADDR's port + I, its
# peer listener on a free port. Prints what to type, then "ready", and stops
# all 3N processes on Ctrl-C. A process that exits (a host killed to see its
# users' 503) is reported and the others keep serving. State survives
# restarts.
set -eu
n=$1 rundir=$2 addr=$3 bin=$4
host=${addr%:*} base=${addr##*:}
case $n in [2-8]) ;; *) echo "HOSTS must be 2 to 8" >&2; exit 2 ;; esac

. "$(dirname "$0")/procs.sh"

r=$rundir/hosts
db=sqlite:$r/cofferd.db
mkdir -p "$r" && chmod 700 "$rundir" "$r"
# Once: the provisioning key, the realm's peer CA, the database, the demo account.
[ -s "$r/provisioning.key" ] || "$bin/coffer-provision" keygen -o "$r/provisioning.key" >/dev/null
provkey=$("$bin/coffer-provision" public -key "$r/provisioning.key")
[ -s "$r/ca/ca.crt" ] || "$bin/cofferd" peer ca -out "$r/ca" >/dev/null
"$bin/cofferd" migrate -db "$db" >/dev/null
if [ ! -s "$r/demo.token" ]; then
	"$bin/cofferd" account add -db "$db" demo | awk '$1 == "token" { print $2 }' >"$r/demo.token"
	chmod 600 "$r/demo.token"
fi

for i in $(seq 1 "$n"); do
	h=h$i d=$r/h$i
	mkdir -p "$d" && chmod 700 "$d"
	[ -s "$d/peer/$h.crt" ] || "$bin/cofferd" peer cert -ca "$r/ca" -host "$h" -out "$d/peer" >/dev/null
	vaults=""
	for v in a b; do
		vd=$d/vault-$v
		if [ ! -s "$vd/bundle.cbor" ]; then
			rm -rf "$vd" && mkdir -p "$vd" && chmod 700 "$vd"
			"$bin/softvault" init -state "$vd/state" >/dev/null
			"$bin/softvault" identity -state "$vd/state" -o "$vd/identity.cbor" >/dev/null
			"$bin/coffer-provision" sign -key "$r/provisioning.key" -in "$vd/identity.cbor" -o "$vd/bundle.cbor.new" >/dev/null
			"$bin/softvault" install -state "$vd/state" -bundle "$vd/bundle.cbor.new" >/dev/null
			mv "$vd/bundle.cbor.new" "$vd/bundle.cbor"
		fi
		rm -f "$vd/vault.sock"
		"$bin/softvault" serve -state "$vd/state" -listen "unix:$vd/vault.sock" >"$vd/vault.log" 2>&1 &
		p=$!
		pids="$pids $p"
		echo "$p" >"$vd/vault.pid"
		waitfor "$vd/vault.log" 'msg=ready' "$p" "softvault $h-$v"
		vaults="$vaults${vaults:+,}$h-$v=unix:$vd/vault.sock"
	done
	port=$((base + i))
	"$bin/cofferd" -listen "$host:$port" -db "$db" -host "$h" -vault "$vaults" -allow-insecure-vault \
		-realms "$d/realms" -rollbacks "$d/rollbacks.json" \
		-peer-listen 127.0.0.1:0 -peer-cert "$d/peer/$h.crt" -peer-key "$d/peer/$h.key" -peer-ca "$d/peer/ca.crt" \
		>"$d/cofferd.log" 2>&1 &
	p=$!
	pids="$pids $p"
	echo "$p" >"$d/cofferd.pid"
	waitfor "$d/cofferd.log" 'msg=listening' "$p" "cofferd $h"
done

# Every device reported healthy to the database: the demo account's first
# request can be placed.
for _ in $(seq 300); do
	[ "$("$bin/cofferd" device list -db "$db" | awk '$3 == "active" && $7 == "true"' | wc -l)" -ge $((2 * n)) ] && break
	sleep 0.1
done

cat <<HINT

Coffer: one realm of $n hosts, cofferd h1..h$n on http://$host:$((base + 1)) to http://$host:$((base + n)),
each with two INSECURE software vaults (h1-a, h1-b, ...), all sharing the state database
$db; peer TLS from the realm's CA in $r/ca; logs in $r/hI.
Try, in another terminal:
  export COFFER_CONFIG=$r/coffer.json COFFER=$bin/coffer
  \$COFFER init --server http://$host:$((base + 1)) --token $(cat "$r/demo.token") --insecure --password \\
        --provisioning-key $provkey
  \$COFFER backup README.md protocol -o /tmp/demo.coffer
  \$COFFER config set server http://$host:$((base + n))      # any host: it forwards to the one holding your vault
  \$COFFER restore /tmp/demo.coffer -C /tmp/demo-restored
  $bin/cofferd device list -db $db      # which device and host hold the demo account
  $bin/cofferd account add -db $db NAME # more users, placed on the device with the most room
Kill the host of the demo account's device (device list says which; say h1): its users get a 503
naming it, everyone else is served by the others (Ctrl-C here and run again to bring it back):
  kill \$(cat $r/h1/cofferd.pid)
Ctrl-C stops all $((3 * n)) processes.

ready: $n hosts, $((2 * n)) vaults
HINT

set --
for i in $(seq 1 "$n"); do
	set -- "$@" "h$i: h$i/cofferd" "$r/h$i/cofferd.pid" "h$i: vault-a/vault" "$r/h$i/vault-a/vault.pid" "h$i: vault-b/vault" "$r/h$i/vault-b/vault.pid"
done
watchprocs "$@"
