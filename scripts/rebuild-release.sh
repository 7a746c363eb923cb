#!/bin/sh
# rebuild-release.sh COMMIT BOARD OUTDIR: rebuild a logged release from its
# source commit, for coffer-monitor (its default -rebuild command). Clones
# the repository (COFFER_REPO, default: the one this script is in) at
# COMMIT into a temporary folder, builds there, and writes the images'
# SHA-256 to OUTDIR/SHA256SUMS in sha256sum's format, which coffer-monitor
# compares with the logged hashes:
#
#   BOARD usbarmory or qemu: `make firmware BOARD=BOARD` (the TamaGo
#     toolchain, see firmware/README-firmware.md): applet.elf and
#     coffer-os.elf, and coffer-boot.imx if that commit's build makes one.
#   BOARD software: the software vault binary, softvault.
#
# Exits non-zero, with the build's output, if the build fails.
set -eu
[ $# -eq 3 ] || { echo "usage: rebuild-release.sh COMMIT BOARD OUTDIR" >&2; exit 2; }
commit=$1 board=$2 out=$3
case $commit in *[!0-9a-f]*|"") echo "rebuild-release: commit $commit is not a hex commit id" >&2; exit 2 ;; esac
case $board in usbarmory|qemu|software) ;; *) echo "rebuild-release: unknown board $board" >&2; exit 2 ;; esac
repo=${COFFER_REPO:-$(cd "$(dirname "$0")/.." && pwd)}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/coffer-rebuild.XXXXXX")
cleanup() { chmod -R u+w "$tmp" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

git clone --quiet --no-checkout "$repo" "$tmp/src"
git -C "$tmp/src" -c advice.detachedHead=false checkout --quiet --detach "$commit"
mkdir -p "$out"
case $board in
software)
	mkdir -p "$tmp/bin"
	(cd "$tmp/src" && CGO_ENABLED=0 GOFLAGS= go build -trimpath -buildvcs=false -o "$tmp/bin/softvault" ./applet/softvault/cmd/softvault)
	(cd "$tmp/bin" && sha256sum softvault) > "$out/SHA256SUMS"
	;;
*)
	# The commit's own make decides how its images are built; the clone's
	# default build folder keeps every path as a release build has it.
	unset MAKEFLAGS MFLAGS MAKELEVEL FW_BUILD FW_TAGS FW_VERSION 2>/dev/null || true
	make -C "$tmp/src" --no-print-directory firmware BOARD="$board"
	build=$tmp/src/build/firmware/$board
	images="applet.elf coffer-os.elf"
	[ -f "$build/coffer-boot.imx" ] && images="$images coffer-boot.imx"
	(cd "$build" && sha256sum $images) > "$out/SHA256SUMS"
	;;
esac
cat "$out/SHA256SUMS"
