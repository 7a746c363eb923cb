#!/bin/sh
# run-realms.sh N RUNDIR ADDR BIN: `make run REALMS=N`. Starts N realms on
# this machine, each a software vault process (softvault dev, INSECURE) behind
# a cofferd process of its own, with its own state folder RUNDIR/realm-I, its
# own state database (one account, "demo") and its own development
# provisioning key: N operators, as far as one machine can pretend. cofferd I
# listens on ADDR's port + I. Writes RUNDIR/realms.json for
# `coffer init --realms`, prints what to type, and stops all 2N processes on
# Ctrl-C. A process that exits (say, a vault killed to see a realm fail) is
# reported and the others keep serving. State survives restarts.
set -eu
n=$1 rundir=$2 addr=$3 bin=$4
host=${addr%:*} base=${addr##*:}
case $n in [1-8]) ;; *) echo "REALMS must be 2 to 8 (a realm set has 2 to 8 realms)" >&2; exit 2 ;; esac
[ "$n" -ge 2 ] || { echo "REALMS must be 2 to 8" >&2; exit 2; }

. "$(dirname "$0")/procs.sh"

mkdir -p "$rundir" && chmod 700 "$rundir"
json="["
for i in $(seq 1 "$n"); do
	d=$rundir/realm-$i
	mkdir -p "$d/vault" && chmod 700 "$d" "$d/vault"
	rm -f "$d/vault.sock"
	"$bin/softvault" dev -state "$d/vault" -listen "unix:$d/vault.sock" >"$d/vault.log" 2>&1 &
	vault=$!
	pids="$pids $vault"
	echo "$vault" >"$d/vault.pid"
	waitfor "$d/vault.log" 'msg=ready' "$vault" "softvault of realm-$i"
	"$bin/cofferd" migrate -db "sqlite:$d/cofferd.db" >/dev/null
	if [ ! -s "$d/demo.token" ]; then
		"$bin/cofferd" account add -db "sqlite:$d/cofferd.db" demo | awk '$1 == "token" { print $2 }' >"$d/demo.token"
		chmod 600 "$d/demo.token"
	fi
	port=$((base + i))
	"$bin/cofferd" -listen "$host:$port" -db "sqlite:$d/cofferd.db" -vault "unix:$d/vault.sock" -allow-insecure-vault >"$d/cofferd.log" 2>&1 &
	daemon=$!
	pids="$pids $daemon"
	echo "$daemon" >"$d/cofferd.pid"
	waitfor "$d/cofferd.log" 'msg=listening' "$daemon" "cofferd of realm-$i"
	key=$("$bin/coffer-provision" public -key "$d/vault/provisioning.key")
	[ "$i" -gt 1 ] && json="$json,"
	json="$json
  {\"name\": \"realm-$i\", \"server\": \"http://$host:$port\", \"token\": \"$(cat "$d/demo.token")\",
   \"provisioning_key\": \"$key\", \"operator\": \"demo operator $i (this machine)\"}"
done
umask 077
printf '%s\n]\n' "$json" >"$rundir/realms.json"

cat <<HINT

Coffer: $n realms, each an INSECURE software vault behind its own cofferd on
http://$host:$((base + 1)) to http://$host:$((base + n)); state and logs in $rundir/realm-1 .. realm-$n.
Try, in another terminal:
  export COFFER_CONFIG=$rundir/coffer.json COFFER=$bin/coffer
  \$COFFER init --realms $rundir/realms.json --insecure
  \$COFFER backup README.md protocol -o /tmp/demo.coffer
  \$COFFER restore /tmp/demo.coffer -C /tmp/demo-restored
  \$COFFER realms
See a realm fail (the others still restore; Ctrl-C here and run again to bring it back):
  kill \$(cat $rundir/realm-$n/vault.pid)
Ctrl-C stops all $((2 * n)) processes.

HINT

set --
for i in $(seq 1 "$n"); do
	set -- "$@" "realm-$i: vault" "$rundir/realm-$i/vault.pid" "realm-$i: cofferd" "$rundir/realm-$i/cofferd.pid"
done
watchprocs "$@"
