// Command coffer-monitor checks what Coffer's release log holds
// (protocol/RELEASES.md), for an operator's users or an auditor:
//
//	coffer-monitor [follow] -policy FILE -log URL -state FILE [-provisioning-key HEX] [-rebuild CMD] [-once] [-interval D]
//	coffer-monitor vaults -policy FILE -log URL -state FILE [-provisioning-key HEX]
//
// follow (the default) reads the log at URL (cofferd's /v1/log/, or any
// mirror: nothing it serves is believed) with client/logcheck: every
// checkpoint must carry the release key's signature and the policy's
// quorum of witness cosignatures, and the entries added since the last
// run must hash to it. It prints each new entry once, and flags (FLAGGED)
// a release whose Version is not above every earlier release's for the
// same board (the bootloader's anti-rollback counts on it growing). It
// rebuilds each logged release from its source commit by running CMD
// COMMIT BOARD OUTDIR
// (default scripts/rebuild-release.sh; "" skips rebuilding), which must
// write OUTDIR/SHA256SUMS in sha256sum's format naming coffer-os.elf and
// applet.elf (softvault for a software release, and coffer-boot.imx when
// the release logs a boot image: the default script rebuilds the
// bootloader only with BOOT_POLICY set to the policy file the release was
// built with, which the bootloader embeds), and compares every image it
// reports with the logged hash: a difference prints MISMATCH, even when
// another image is missing. A release whose images all match but one was
// not reported stays NOT REBUILT. A commit that is not a full hex commit id
// (40 or 64 digits) is FLAGGED NOT A COMMIT ID and never rebuilt; one the
// command says does not resolve (exit status 10) is FLAGGED UNRESOLVED
// COMMIT, and flagged again every run until it resolves. It flags every
// identity bundle not signed by the provisioning key (with
// -provisioning-key) and prints every revocation. The view of the log, the
// catalog of what it held and the releases still to rebuild are kept in
// the state file (replaced atomically). With -once it makes one pass;
// otherwise one every -interval until interrupted.
//
// vaults updates the same way (without rebuilding, but flagging a version
// that does not increase) and lists every vault identity ever logged:
// index, name, signing key, firmware (and the logged release it is), the
// insecure flag, whether its signature verifies under -provisioning-key,
// and whether it is revoked; then the revocations.
//
// Exit status: 0 all is well; 1 a finding (MISMATCH, FLAGGED: a version
// that does not increase, a commit that is not a commit id or does not
// resolve; an identity not signed by the provisioning key), reported after
// the whole pass and with the state saved; 2 usage; 3 a release could not
// be rebuilt yet and there is no finding (it is retried next run); 4 the
// log forked or rolled back (the state is not advanced: keep it, it is the
// evidence); 5 any other failure (the log unreachable, a checkpoint that
// does not verify).
package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/cofferhsm/coffer/client"
	"github.com/cofferhsm/coffer/client/logcheck"
	"github.com/cofferhsm/coffer/internal/buildinfo"
	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/releaselog"
)

// Exit statuses (see the package doc).
const (
	exitOK         = 0
	exitFinding    = 1
	exitUsage      = 2
	exitNotRebuilt = 3
	exitFork       = 4
	exitFailure    = 5
)

func main() {
	if len(os.Args) > 1 && buildinfo.IsVersionFlag(os.Args[1]) {
		fmt.Print(buildinfo.Line("coffer-monitor"))
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// monitor is one configured run.
type monitor struct {
	policy    *releaselog.Policy
	src       logcheck.Source
	statePath string
	provKey   ed25519.PublicKey // nil: signatures not checked
	rebuild   []string          // nil: no rebuilds
	out, errs io.Writer
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := "follow"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	if cmd != "follow" && cmd != "vaults" {
		fmt.Fprintf(stderr, "coffer-monitor: unknown command %q (follow or vaults)\n", cmd)
		return exitUsage
	}
	fs := flag.NewFlagSet("coffer-monitor "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	policyPath := fs.String("policy", "", "the log policy file (origin, release key, witnesses, quorum; RELEASES.md)")
	logURL := fs.String("log", "", "the log's URL: cofferd's http(s)://HOST/v1/log/ or a mirror")
	statePath := fs.String("state", "", "the monitor's state file (created on the first run)")
	provKey := fs.String("provisioning-key", "", "the provisioning key (hex Ed25519) every logged identity must be signed by")
	var rebuildCmd *string
	var once *bool
	var interval *time.Duration
	if cmd == "follow" {
		rebuildCmd = fs.String("rebuild", "scripts/rebuild-release.sh", `command run as CMD COMMIT BOARD OUTDIR to rebuild a release ("" to skip)`)
		once = fs.Bool("once", false, "one pass, then exit")
		interval = fs.Duration("interval", 10*time.Minute, "time between passes without -once")
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 || *policyPath == "" || *logURL == "" || *statePath == "" {
		fmt.Fprintln(stderr, "coffer-monitor: -policy, -log and -state are required, and nothing else")
		return exitUsage
	}
	m := &monitor{statePath: *statePath, out: stdout, errs: stderr}
	text, err := os.ReadFile(*policyPath)
	if err == nil {
		m.policy, err = releaselog.ParsePolicy(text)
	}
	if err != nil {
		fmt.Fprintln(stderr, "coffer-monitor: -policy:", err)
		return exitUsage
	}
	u, err := url.Parse(*logURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		fmt.Fprintf(stderr, "coffer-monitor: -log %q is not an http(s) URL\n", *logURL)
		return exitUsage
	}
	m.src = logcheck.HTTPSource(u, nil)
	if *provKey != "" {
		if m.provKey, err = client.ParseProvisioningKey(*provKey); err != nil {
			fmt.Fprintln(stderr, "coffer-monitor: -provisioning-key:", err)
			return exitUsage
		}
	}
	if cmd == "vaults" {
		return m.vaults(ctx)
	}
	if *rebuildCmd != "" {
		m.rebuild = strings.Fields(*rebuildCmd)
	}
	if *once {
		return m.pass(ctx)
	}
	for {
		code := m.pass(ctx)
		if code == exitFork {
			return code
		}
		select {
		case <-ctx.Done():
			return code
		case <-time.After(*interval):
		}
	}
}

// update moves the state to the log's newest checkpoint and catalogs the
// new entries. On a fork or rollback it says so and returns exitFork; the
// state is then left as it was.
func (m *monitor) update(ctx context.Context, st *state) ([]logcheck.Logged, int) {
	cp, logged, err := logcheck.Update(ctx, m.src, m.policy, &st.View)
	switch {
	case errors.Is(err, releaselog.ErrInconsistent):
		fmt.Fprintf(m.out, "FORK OR ROLLBACK: the log is not consistent with the checkpoint this monitor verified before (size %d, root %x): %v\n", st.View.Size, st.View.Root, err)
		fmt.Fprintf(m.out, "The state file %s is NOT advanced: keep it (it holds the last verified checkpoint) as evidence.\n", m.statePath)
		return nil, exitFork
	case errors.Is(err, logcheck.ErrStale):
		// Witnessed, so not a fork; but a log's own address never goes
		// back, and a mirror that does is not worth following.
		fmt.Fprintf(m.out, "FORK OR ROLLBACK: the log serves an older checkpoint (size %d) than this monitor verified before (size %d, root %x): a rollback of the log or a stale mirror: %v\n", cp.Size, st.View.Size, st.View.Root, err)
		fmt.Fprintf(m.out, "The state file %s is NOT advanced.\n", m.statePath)
		return nil, exitFork
	case err != nil:
		fmt.Fprintln(m.errs, "coffer-monitor:", err)
		return nil, exitFailure
	}
	st.Checkpoint = string(cp.Raw)
	fmt.Fprintf(m.out, "checkpoint: %d entries, root %x, cosigned by %s\n", cp.Size, cp.Hash, strings.Join(cp.Witnessed, ", "))
	for _, l := range logged {
		switch l.Entry.Kind {
		case releaselog.KindRelease:
			st.Releases = append(st.Releases, loggedRelease{Index: l.Index, Release: *l.Entry.Release})
		case releaselog.KindIdentity:
			st.Identities = append(st.Identities, loggedIdentity{Index: l.Index, Signed: *l.Entry.Identity})
		case releaselog.KindRevocation:
			st.Revocations = append(st.Revocations, loggedRevocation{Index: l.Index, Revocation: *l.Entry.Revocation})
		}
	}
	return logged, exitOK
}

// pass is one run of follow.
func (m *monitor) pass(ctx context.Context) int {
	st, err := loadState(m.statePath)
	if err != nil {
		fmt.Fprintln(m.errs, "coffer-monitor:", err)
		return exitFailure
	}
	logged, code := m.update(ctx, st)
	if code != exitOK {
		return code
	}
	findings := 0
	for _, l := range logged {
		switch l.Entry.Kind {
		case releaselog.KindRelease:
			m.printRelease(l.Index, l.Entry.Release)
			if !m.checkVersion(st, l.Index, l.Entry.Release) {
				findings++
			}
			st.Pending = append(st.Pending, l.Index)
		case releaselog.KindIdentity:
			if !m.printIdentity(st, l.Index, l.Entry.Identity) {
				findings++
			}
		case releaselog.KindRevocation:
			m.printRevocation(st, l.Index, l.Entry.Revocation)
		}
	}
	var pending []uint64
	notRebuilt := 0
	for _, i := range st.Pending {
		switch m.rebuildOne(ctx, st, i) {
		case verdictPending:
			pending = append(pending, i)
			notRebuilt++
		case verdictUnresolved:
			pending = append(pending, i) // flagged again until it resolves
			findings++
		case verdictMismatch, verdictNotACommit:
			findings++
		}
	}
	st.Pending = pending
	if err := st.save(m.statePath); err != nil {
		fmt.Fprintln(m.errs, "coffer-monitor: saving the state:", err)
		return exitFailure
	}
	switch {
	case findings > 0:
		fmt.Fprintf(m.out, "%d FINDING(S): see MISMATCH, FLAGGED and NOT SIGNED above\n", findings)
		return exitFinding
	case notRebuilt > 0:
		fmt.Fprintf(m.out, "%d release(s) not rebuilt yet; retried next run\n", notRebuilt)
		return exitNotRebuilt
	}
	return exitOK
}

// checkVersion flags (false) a newly logged release whose Version is not
// above that of every release logged before it for the same board: the
// bootloader's anti-rollback (the RPMB minimum) counts on it growing.
func (m *monitor) checkVersion(st *state, i uint64, r *releaselog.Release) bool {
	var prev *loggedRelease
	for j := range st.Releases {
		p := &st.Releases[j]
		if p.Index < i && p.Release.Board == r.Board && (prev == nil || p.Release.Version > prev.Release.Version) {
			prev = p
		}
	}
	if prev == nil || r.Version > prev.Release.Version {
		return true
	}
	fmt.Fprintf(m.out, "FLAGGED #%d release %s: VERSION %d for board %s does not increase over #%d release %s (version %d)\n",
		i, r.Name, r.Version, r.Board, prev.Index, prev.Release.Name, prev.Release.Version)
	return false
}

func (m *monitor) printRelease(i uint64, r *releaselog.Release) {
	fmt.Fprintf(m.out, "#%d release %s: version %d, board %s, commit %s, toolchain %s\n", i, r.Name, r.Version, r.Board, r.Commit, r.Toolchain)
	fmt.Fprintf(m.out, "    firmware %x\n    applet   %x\n", r.Firmware, r.Applet)
	if len(r.BootImage) > 0 {
		fmt.Fprintf(m.out, "    boot     %x\n", r.BootImage)
	}
}

// verdict is what one pass concluded about a release's rebuild.
type verdict int

const (
	verdictPending    verdict = iota // no verdict yet: retried next run
	verdictMatch                     // every logged image rebuilt and equal
	verdictMismatch                  // an image rebuilt and different: final
	verdictUnresolved                // the commit does not resolve: flagged, retried
	verdictNotACommit                // the commit is not a full commit id: flagged, final
)

// rebuildOne rebuilds the release at index i and records a final verdict
// in st.Results.
func (m *monitor) rebuildOne(ctx context.Context, st *state, i uint64) verdict {
	r := st.release(i)
	if r == nil {
		fmt.Fprintf(m.errs, "coffer-monitor: the state names no release at %d\n", i)
		return verdictPending
	}
	final := func(v verdict, note string) verdict {
		if st.Results == nil {
			st.Results = map[uint64]rebuildOK{}
		}
		st.Results[i] = rebuildOK{Match: v == verdictMatch, Note: note}
		return v
	}
	if !fullCommit(r.Commit) {
		fmt.Fprintf(m.out, "FLAGGED #%d release %s: NOT A COMMIT ID %q (a release logs its full hex commit): nobody can rebuild it\n", i, r.Name, r.Commit)
		return final(verdictNotACommit, "not a full commit id")
	}
	if m.rebuild == nil {
		fmt.Fprintf(m.out, "#%d release %s: NOT REBUILT (-rebuild \"\")\n", i, r.Name)
		return verdictPending
	}
	var log bytes.Buffer
	cs, err := rebuild(ctx, m.rebuild, r, &log)
	switch {
	case errors.Is(err, errCommitUnknown):
		fmt.Fprintf(m.out, "FLAGGED #%d release %s: UNRESOLVED COMMIT %s: %v; nobody can rebuild it from the published source (retried next run)\n", i, r.Name, r.Commit, err)
		fmt.Fprintf(m.errs, "rebuild of #%d (%s %s), its output:\n%s\n", i, r.Commit, r.Board, tail(log.Bytes(), 4096))
		return verdictUnresolved
	case err != nil:
		fmt.Fprintf(m.out, "#%d release %s: NOT REBUILT: %v\n", i, r.Name, err)
		fmt.Fprintf(m.errs, "rebuild of #%d (%s %s), its output:\n%s\n", i, r.Commit, r.Board, tail(log.Bytes(), 4096))
		return verdictPending
	}
	// Every image that was rebuilt is compared, whatever else is missing:
	// a missing image never hides another's mismatch.
	var mismatched, missing []string
	for _, c := range cs {
		switch {
		case c.rebuilt == nil:
			missing = append(missing, fmt.Sprintf("%s (%s)", c.part, c.file))
		case !bytes.Equal(c.logged, c.rebuilt):
			mismatched = append(mismatched, c.part)
			fmt.Fprintf(m.out, "MISMATCH #%d release %s (commit %s, board %s): %s (%s) logged %x, rebuilt %x\n",
				i, r.Name, r.Commit, r.Board, c.part, c.file, c.logged, c.rebuilt)
		}
	}
	switch {
	case len(mismatched) > 0:
		if len(missing) > 0 {
			fmt.Fprintf(m.out, "#%d release %s: also not rebuilt: %s\n", i, r.Name, strings.Join(missing, ", "))
		}
		return final(verdictMismatch, "mismatch: "+strings.Join(mismatched, ", "))
	case len(missing) > 0:
		fmt.Fprintf(m.out, "#%d release %s: NOT REBUILT: the rebuild reported no %s; the %d image(s) it did report match (retried next run)\n",
			i, r.Name, strings.Join(missing, ", "), len(cs)-len(missing))
		fmt.Fprintf(m.errs, "rebuild of #%d (%s %s), its output:\n%s\n", i, r.Commit, r.Board, tail(log.Bytes(), 4096))
		return verdictPending
	}
	fmt.Fprintf(m.out, "#%d release %s: rebuilt, every image matches\n", i, r.Name)
	return final(verdictMatch, "")
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// identityInfo is what `vaults` and follow say about a logged identity.
type identityInfo struct {
	id        *protocol.Identity // nil: the body does not decode
	signature string             // valid, NOT SIGNED BY THE PROVISIONING KEY, unchecked
	signedOK  bool
	release   string // the logged release its firmware is, or "NOT A LOGGED RELEASE"
	revoked   string // "" or the revocation's reason
	// relogged: the bundle carries keys an earlier identity revocation
	// withdrew. No honest writer logs it (coffer-release add-identity
	// refuses to): a finding.
	relogged bool
}

func (m *monitor) describe(st *state, index uint64, si *protocol.SignedIdentity) identityInfo {
	var info identityInfo
	var id protocol.Identity
	if protocol.Unmarshal(si.Body, &id) == nil {
		info.id = &id
	}
	switch {
	case m.provKey == nil:
		info.signature, info.signedOK = "unchecked (no -provisioning-key)", true
	default:
		if _, err := si.Verify(m.provKey); err != nil {
			info.signature = "NOT SIGNED BY THE PROVISIONING KEY"
		} else {
			info.signature, info.signedOK = "valid", true
		}
	}
	info.release = "NOT A LOGGED RELEASE"
	if info.id != nil {
		for _, r := range st.Releases {
			if bytes.Equal(r.Release.Firmware, info.id.FirmwareHash) {
				info.release = fmt.Sprintf("release %s (#%d)", r.Release.Name, r.Index)
			}
		}
	}
	bh := releaselog.BundleHash(si)
	for _, r := range st.Revocations {
		if r.Revocation.Target != releaselog.KindIdentity {
			continue
		}
		if bytes.Equal(r.Revocation.Hash, bh) {
			info.revoked = fmt.Sprintf("REVOKED (#%d: %s)", r.Index, r.Revocation.Reason)
			break
		}
		// A revocation withdraws the revoked bundle's keys: the same keys
		// in any other bundle are the same vault (RELEASES.md).
		if info.id == nil {
			continue
		}
		if at, keys := revokedBundle(st, r.Revocation.Hash); keys != nil && keys.Shared(info.id) != "" {
			info.revoked = fmt.Sprintf("REVOKED (keys of #%d, by #%d: %s)", at, r.Index, r.Revocation.Reason)
			if index > r.Index {
				info.revoked = fmt.Sprintf("REVOKED KEYS LOGGED AGAIN (keys of #%d, revoked by #%d: %s)", at, r.Index, r.Revocation.Reason)
				info.relogged = true
				break
			}
		}
	}
	return info
}

// revokedBundle finds the logged bundle an identity revocation names and
// returns its index and keys (nil when no logged bundle has that hash).
func revokedBundle(st *state, hash []byte) (uint64, *releaselog.IdentityKeys) {
	for _, li := range st.Identities {
		if bytes.Equal(releaselog.BundleHash(&li.Signed), hash) {
			if keys, err := releaselog.KeysOf(&li.Signed); err == nil {
				return li.Index, keys
			}
		}
	}
	return 0, nil
}

// printIdentity prints a newly logged identity; false if it is a finding.
func (m *monitor) printIdentity(st *state, i uint64, si *protocol.SignedIdentity) bool {
	info := m.describe(st, i, si)
	if info.id == nil {
		fmt.Fprintf(m.out, "#%d identity: its body does not decode; signature %s\n", i, info.signature)
		return info.signedOK
	}
	insecure := ""
	if info.id.Insecure {
		insecure = ", INSECURE (software or emulator)"
	}
	fmt.Fprintf(m.out, "#%d identity %q: signing key %x, firmware %x (%s)%s, signature %s\n",
		i, info.id.Name, info.id.SigningKey, info.id.FirmwareHash, info.release, insecure, info.signature)
	if info.relogged {
		fmt.Fprintf(m.out, "#%d %s\n", i, info.revoked)
	}
	return info.signedOK && !info.relogged
}

func (m *monitor) printRevocation(st *state, i uint64, r *releaselog.Revocation) {
	what := "identity bundle"
	if r.Target == releaselog.KindRelease {
		what = "release firmware"
		for _, rel := range st.Releases {
			if bytes.Equal(rel.Release.Firmware, r.Hash) {
				what = fmt.Sprintf("release %s (#%d), firmware", rel.Release.Name, rel.Index)
			}
		}
	}
	fmt.Fprintf(m.out, "#%d REVOCATION of %s %x: %s\n", i, what, r.Hash, r.Reason)
}

// vaults updates the catalog and lists every logged identity.
func (m *monitor) vaults(ctx context.Context) int {
	st, err := loadState(m.statePath)
	if err != nil {
		fmt.Fprintln(m.errs, "coffer-monitor:", err)
		return exitFailure
	}
	logged, code := m.update(ctx, st)
	if code != exitOK {
		return code
	}
	findings := 0
	for _, l := range logged {
		if l.Entry.Kind == releaselog.KindRelease {
			if !m.checkVersion(st, l.Index, l.Entry.Release) {
				findings++
			}
			st.Pending = append(st.Pending, l.Index) // rebuilt by the next follow
		}
	}
	if err := st.save(m.statePath); err != nil {
		fmt.Fprintln(m.errs, "coffer-monitor: saving the state:", err)
		return exitFailure
	}
	flagged := findings
	fmt.Fprintf(m.out, "%d vault identities logged:\n", len(st.Identities))
	fmt.Fprintln(m.out, "INDEX\tNAME\tSIGNING KEY\tFIRMWARE\tINSECURE\tSIGNATURE\tREVOKED")
	for _, li := range st.Identities {
		info := m.describe(st, li.Index, &li.Signed)
		if !info.signedOK || info.relogged {
			findings++
		}
		revoked := "no"
		if info.revoked != "" {
			revoked = info.revoked
		}
		if info.id == nil {
			fmt.Fprintf(m.out, "%d\t(body does not decode)\t-\t-\t-\t%s\t%s\n", li.Index, info.signature, revoked)
			continue
		}
		fmt.Fprintf(m.out, "%d\t%q\t%s\t%s %s\t%v\t%s\t%s\n", li.Index, info.id.Name, hex.EncodeToString(info.id.SigningKey),
			hex.EncodeToString(info.id.FirmwareHash), info.release, info.id.Insecure, info.signature, revoked)
	}
	fmt.Fprintf(m.out, "%d revocations logged:\n", len(st.Revocations))
	for _, r := range st.Revocations {
		m.printRevocation(st, r.Index, &r.Revocation)
	}
	if n := findings - flagged; n > 0 {
		fmt.Fprintf(m.out, "%d identities NOT SIGNED BY THE PROVISIONING KEY\n", n)
	}
	if flagged > 0 {
		fmt.Fprintf(m.out, "%d new release(s) FLAGGED above\n", flagged)
	}
	if findings > 0 {
		return exitFinding
	}
	return exitOK
}
