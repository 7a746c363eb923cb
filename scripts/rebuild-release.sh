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
#     coffer-os.elf. With BOOT_POLICY set, also the bootloader built with
#     it, coffer-boot.elf, and for usbarmory `make imx` (mkimage,
#     u-boot-tools) its coffer-boot.imx, the release's BootImage.
#   BOARD software: the software vault binary, softvault.
#
# BOOT_POLICY (environment): the release log policy file the release was
# built with, byte for byte (the bootloader embeds it): the log's own
# published policy, the file coffer-monitor -policy reads. Without it the
# bootloader is not reported (coffer-boot.*), so a release that logs a boot
# image stays "not rebuilt" instead of being compared with a bootloader
# that pins another policy; its OS and applet are still compared.
#
# Exits 10 if COMMIT does not resolve to a commit in the repository (after
# a clone, and a fetch of that commit by id): coffer-monitor flags such a
# release, since nobody can rebuild it from the published source. Exits
# another non-zero status, with the build's output, if anything else fails
# (usage 2; the clone, the build): the release is retried later.
set -eu
[ $# -eq 3 ] || { echo "usage: rebuild-release.sh COMMIT BOARD OUTDIR" >&2; exit 2; }
commit=$1 board=$2 out=$3
case $commit in *[!0-9a-f]*|"") echo "rebuild-release: commit $commit is not a hex commit id" >&2; exit 2 ;; esac
case ${#commit} in 40|64) ;; *) echo "rebuild-release: commit $commit is not a full commit id (40 or 64 hex digits)" >&2; exit 2 ;; esac
case $board in usbarmory|qemu|software) ;; *) echo "rebuild-release: unknown board $board" >&2; exit 2 ;; esac
repo=${COFFER_REPO:-$(cd "$(dirname "$0")/.." && pwd)}
policy=${BOOT_POLICY:-}
if [ -n "$policy" ]; then
	[ -f "$policy" ] || { echo "rebuild-release: BOOT_POLICY $policy: no such file" >&2; exit 2; }
	policy=$(cd "$(dirname "$policy")" && pwd)/$(basename "$policy")
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/coffer-rebuild.XXXXXX")
# Status 10 means "the commit does not resolve" only before it resolved: a
# build step that happens to exit 10 later is an ordinary failure.
resolved=
cleanup() {
	rc=$?
	chmod -R u+w "$tmp" 2>/dev/null || true
	rm -rf "$tmp"
	if [ "$rc" -eq 10 ] && [ -n "$resolved" ]; then exit 1; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

git clone --quiet --no-checkout "$repo" "$tmp/src"
# A commit no branch or tag reaches is not in the clone: ask for it by id.
git -C "$tmp/src" cat-file -e "$commit^{commit}" 2>/dev/null ||
	git -C "$tmp/src" fetch --quiet origin "$commit" 2>/dev/null || true
if ! git -C "$tmp/src" cat-file -e "$commit^{commit}" 2>/dev/null; then
	echo "rebuild-release: commit $commit does not resolve in $repo" >&2
	exit 10
fi
resolved=1
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
	unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES FW_BUILD FW_TAGS FW_VERSION BOOT_POLICY OS_PROOF DEV 2>/dev/null || true
	build=$tmp/src/build/firmware/$board
	images="applet.elf coffer-os.elf"
	# DEV=1: the build of a USB armory bootloader refuses a TEST policy
	# without it; a rebuild reproduces whatever was released (DEV changes
	# no byte of any image), and without BOOT_POLICY builds the bootloader
	# with the TEST policy, not reported.
	if [ -z "$policy" ]; then
		make -C "$tmp/src" --no-print-directory firmware BOARD="$board" DEV=1
		echo "rebuild-release: BOOT_POLICY not set: the bootloader (coffer-boot.elf, coffer-boot.imx) embeds the release's policy file and is not reported" >&2
	elif [ "$board" = usbarmory ] && command -v "${MKIMAGE:-mkimage}" >/dev/null 2>&1; then
		make -C "$tmp/src" --no-print-directory imx BOARD="$board" BOOT_POLICY="$policy" DEV=1
		images="$images coffer-boot.elf coffer-boot.imx"
	else
		make -C "$tmp/src" --no-print-directory firmware BOARD="$board" BOOT_POLICY="$policy" DEV=1
		images="$images coffer-boot.elf"
		[ "$board" = qemu ] || echo "rebuild-release: mkimage not found (apt-get install u-boot-tools): coffer-boot.imx not rebuilt" >&2
	fi
	# An older commit may not build a bootloader.
	[ -f "$build/coffer-boot.elf" ] || images="applet.elf coffer-os.elf"
	(cd "$build" && sha256sum $images) > "$out/SHA256SUMS"
	;;
esac
cat "$out/SHA256SUMS"
