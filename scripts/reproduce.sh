#!/bin/sh
# Build the committed HEAD of the repository at $1 twice and compare every
# firmware image byte for byte (`make reproduce`, firmware/firmware.mk).
#
# Build A: a fresh clone, this user, this environment, this user's Go build
# cache. Build B: another fresh clone, run as `nobody` when we are root
# (otherwise as this user, and we say so), in an empty environment (env -i)
# with its own HOME, a cold Go build cache, its own module cache filled from
# a copy of ours (GOPROXY=file://, so no network), the toolchain at another
# path, another time zone and umask, and later. Whatever differs between the
# two and still reaches an image is a reproducibility bug.
#
# Environment (set by firmware.mk): FW_GO (host go), TAMAGO (a tamago-go
# folder or go command), MKIMAGE, BOARD, BOOT_POLICY (the release log policy
# the bootloader embeds: an input of the build, copied once and given to
# both builds, which must embed the same bytes), DEV (1: a TEST policy is
# accepted for a USB armory bootloader, firmware.mk), IMAGES and IMX_IMAGES (files under
# build/firmware/BOARD to compare), TARGETS and IMX_TARGETS (make goals that
# build them). Exits non-zero, naming the file, when any image differs or is
# missing.
set -eu

root=$(cd "$1" && pwd)
say() { echo "reproduce: $*"; }
die() { say "$*" >&2; exit 1; }

# Variables given to the make that ran us must not reach the clones' makes
# (FW_BUILD=..., FW_TAGS=..., FW_VERSION=... would change or merge builds).
unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES FW_BUILD FW_TAGS FW_VERSION FW_SOURCE_DATE_EPOCH FW_CHECK_BUILD FW_TEST_BUILD 2>/dev/null || true

commit=$(git -C "$root" rev-parse HEAD)
if [ -n "$(git -C "$root" status --porcelain --untracked-files=no)" ]; then
	say "WARNING: the working tree has uncommitted changes, which are NOT built: this checks the committed HEAD $commit"
fi

images=$IMAGES
targets=$TARGETS
if command -v "$MKIMAGE" >/dev/null 2>&1; then
	images="$images $IMX_IMAGES"
	targets="$targets $IMX_TARGETS"
	imx_note=
else
	imx_note="the .imx images ($IMX_IMAGES) were not compared: $MKIMAGE not found (apt-get install u-boot-tools)"
fi

gobin=$(command -v "$FW_GO") || die "host go ($FW_GO) not found"
gomodcache=$("$FW_GO" env GOMODCACHE)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/coffer-reproduce.XXXXXX")
cleanup() { chmod -R u+w "$tmp" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
chmod 755 "$tmp"

# The bootloader's policy: one copy, readable by build B's user, for both.
[ -f "${BOOT_POLICY:-}" ] || die "BOOT_POLICY (${BOOT_POLICY:-unset}): no such file; it is the release log policy the bootloader embeds"
policy=$tmp/boot-policy.txt
cp "$BOOT_POLICY" "$policy"
chmod 644 "$policy"
say "bootloader policy: $BOOT_POLICY (SHA-256 $(sha256sum "$policy" | cut -d' ' -f1))"

clone() {
	git clone --quiet --no-local --no-checkout "$root" "$1"
	git -C "$1" -c advice.detachedHead=false checkout --quiet --detach "$commit" 2>/dev/null ||
		{ git -C "$1" fetch --quiet "$root" "$commit" && git -C "$1" -c advice.detachedHead=false checkout --quiet --detach "$commit"; }
}

# --- build A -----------------------------------------------------------------
clone "$tmp/a"
say "build A: $(id -un), $tmp/a, GOCACHE $("$FW_GO" env GOCACHE), toolchain $TAMAGO"
start=$(date +%s)
make --no-print-directory -C "$tmp/a" TAMAGO="$TAMAGO" FW_GO="$FW_GO" BOARD="$BOARD" BOOT_POLICY="$policy" DEV="${DEV:-}" $targets >"$tmp/a.log" 2>&1 ||
	{ cat "$tmp/a.log"; die "build A failed"; }
say "build A took $(($(date +%s) - start)) s"

# --- build B -----------------------------------------------------------------
b=$tmp/b
mkdir -p "$b/home" "$b/gocache" "$b/gomod" "$b/tmp" "$b/toolchain"
clone "$b/src"
# The module cache's downloads, copied, as a file proxy: B fetches nothing.
cp -a "$gomodcache/cache/download" "$tmp/proxy"
chmod -R a+rX "$tmp/proxy"
# The toolchain at another path (hard links when the file system allows).
tamago_b=$TAMAGO
if [ -d "$TAMAGO" ]; then
	tamago_b=$b/toolchain/$(basename "$TAMAGO")
	cp -al "$TAMAGO" "$tamago_b" 2>/dev/null || { rm -rf "$tamago_b"; cp -a "$TAMAGO" "$tamago_b"; }
fi
as=
who=$(id -un)
if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1 && command -v runuser >/dev/null 2>&1; then
	chown -R nobody:"$(id -gn nobody)" "$b"
	if runuser -u nobody -- sh -c "test -x '$gobin' && test -r '$tamago_b' && test -r '$tmp/proxy'"; then
		as="runuser -u nobody --"
		who=nobody
	else
		chown -R 0:0 "$b"
		say "build B runs as $who too: user nobody cannot run $gobin or read the toolchain"
	fi
else
	say "build B runs as $who too: another user needs root (runuser -u nobody)"
fi
say "build B: $who, $b/src, fresh GOCACHE $b/gocache, fresh GOMODCACHE, toolchain $tamago_b, empty environment, TZ Pacific/Kiritimati, umask 077"
start=$(date +%s)
$as env -i PATH="$(dirname "$gobin"):/usr/local/bin:/usr/bin:/bin" HOME="$b/home" TMPDIR="$b/tmp" \
	XDG_CACHE_HOME="$b/home/.cache" XDG_CONFIG_HOME="$b/home/.config" \
	GOCACHE="$b/gocache" GOMODCACHE="$b/gomod" GOPROXY="file://$tmp/proxy" GOSUMDB=sum.golang.org \
	TZ=Pacific/Kiritimati LC_ALL=C \
	sh -c 'umask 077; cd "$1" && shift && exec make --no-print-directory "$@"' sh "$b/src" \
	TAMAGO="$tamago_b" FW_GO="$FW_GO" BOARD="$BOARD" BOOT_POLICY="$policy" DEV="${DEV:-}" $targets >"$tmp/b.log" 2>&1 ||
	{ cat "$tmp/b.log"; die "build B failed"; }
say "build B took $(($(date +%s) - start)) s"
say "build B filled its cold GOCACHE with $(du -sm "$b/gocache" | cut -f1) MB"

# --- compare -----------------------------------------------------------------
out_a=$tmp/a/build/firmware/$BOARD
out_b=$b/src/build/firmware/$BOARD
for side in A B; do
	if [ $side = A ]; then dir=$out_a; else dir=$out_b; fi
	say "SHA-256, build $side (commit $commit, BOARD=$BOARD):"
	(cd "$dir" && for f in $images; do
		if [ -f "$f" ]; then sha256sum "$f"; else echo "(missing)  $f"; fi
	done) | sed 's/^/  /'
done
bad=
for f in $images; do
	if [ ! -f "$out_a/$f" ] || [ ! -f "$out_b/$f" ]; then
		say "MISMATCH: $f was not built by both builds"
		bad="$bad $f"
	elif ! cmp "$out_a/$f" "$out_b/$f" >"$tmp/cmp" 2>&1; then
		say "MISMATCH: $f differs: $(cat "$tmp/cmp")"
		case $f in *.elf)
			"$FW_GO" version -m "$out_a/$f" 2>&1 | sed 1s/^[^:]*:// >"$tmp/va" || true
			"$FW_GO" version -m "$out_b/$f" 2>&1 | sed 1s/^[^:]*:// >"$tmp/vb" || true
			diff "$tmp/va" "$tmp/vb" | sed 's/^/  build info: /' || true ;;
		esac
		bad="$bad $f"
	fi
done
[ -z "$imx_note" ] || say "$imx_note"
if [ -n "$bad" ]; then
	keep=$root/build/reproduce
	rm -rf "$keep" && mkdir -p "$keep"
	cp -a "$out_a" "$keep/a" && cp -a "$out_b" "$keep/b" && cp "$tmp/a.log" "$tmp/b.log" "$keep/"
	die "FAILED: not reproducible:$bad (both builds kept in $keep)"
fi
say "OK: $(echo $images | wc -w) images bit-identical across both builds:" $images
