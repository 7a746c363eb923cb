# procs.sh: what run-realms.sh and run-hosts.sh share, sourced by both.
# Every process they start goes into $pids and is stopped (killed, then
# waited for) when the script exits; Ctrl-C exits.

pids=""
stop() {
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	for p in $pids; do wait "$p" 2>/dev/null || true; done
}
trap stop EXIT
trap 'exit 130' INT TERM

# waitfor FILE PATTERN PID WHAT: wait until FILE matches PATTERN.
waitfor() {
	for _ in $(seq 300); do
		grep -q "$2" "$1" 2>/dev/null && return 0
		kill -0 "$3" 2>/dev/null || { echo "$4 exited:"; cat "$1"; exit 1; }
		sleep 0.1
	done
	echo "$4 did not start:"; cat "$1"; exit 1
}

# watchprocs LABEL PIDFILE [LABEL PIDFILE]...: report once each process
# that exits, by its label, with its log (beside its pid file), while the
# others keep serving; exit 1 when all have exited. Runs until the script is
# stopped.
watchprocs() {
	gone=""
	while :; do
		i=0
		for a in "$@"; do
			i=$((i + 1))
			if [ $((i % 2)) -eq 1 ]; then
				label=$a
				continue
			fi
			p=$(cat "$a")
			case " $gone " in *" $p "*) continue ;; esac
			if ! kill -0 "$p" 2>/dev/null; then
				echo "$label (pid $p) exited; log in ${a%.pid}.log; the others keep serving"
				gone="$gone $p"
			fi
		done
		[ "$(echo $gone | wc -w)" -lt $(($# / 2)) ] || { echo "every process exited"; exit 1; }
		sleep 1
	done
}
