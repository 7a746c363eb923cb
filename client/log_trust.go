package client

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/transparency-dev/formats/log"

	"github.com/cofferhsm/coffer/client/logcheck"
	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/releaselog"
)

// vaultTrust is what checking vaults needs in one run: the user's choices,
// and the account's release-log pin, which every realm of a set shares.
// Realms are contacted in parallel; mu keeps the pin to one at a time.
type vaultTrust struct {
	mu            sync.Mutex
	pin           *LogPin // nil: no policy pinned
	allowInsecure bool
	allowUnlogged bool
	source        logcheck.Source // nil: each vault's cofferd serves the log
	notice        func(Notice)
	accept        func(*IdentityChange) error
	// The release log read in this run (log_sync.go), the HTTP client for
	// the pinned log URL, and the clock (tests': nil is time.Now).
	run        *logRun
	httpClient *http.Client
	now        func() time.Time
}

// vaultPin is one vault's pinned state: the single vault's, or a realm's.
type vaultPin struct {
	realm           string // "" : the single vault
	provisioningKey string
	bundleHash      *string
	vault           **VaultInfo
	// reset forgets the vault's store counters when the user accepts new
	// keys: they were another store's (nil: nothing to forget).
	reset func()
}

// check decides whether the vault behind conn, which served si, may be
// used, and pins it. In order: the bundle's signature under the
// provisioning key; an insecure vault needs AllowInsecure; the release log
// (the bundle and its release logged, neither revoked: revoked is refused
// always, unlogged only passes with AllowUnlogged); the vault's signed
// status for this contact (fetchStatus: fresh, and running the firmware
// the bundle names); a changed bundle with the pinned keys is an upgrade,
// accepted once logged with a release version above the pinned one (equal
// or lower is a downgrade, refused always), one with other keys needs the
// user's consent. Nothing is pinned unless all pass. It returns the
// status; the caller applies the store sequence tripwire to it.
func (vt *vaultTrust) check(ctx context.Context, conn *Conn, p vaultPin, si *protocol.SignedIdentity) (*protocol.Identity, *protocol.Status, error) {
	pk, err := ParseProvisioningKey(p.provisioningKey)
	if err != nil {
		return nil, nil, err
	}
	id, err := si.Verify(pk)
	if err != nil {
		return nil, nil, fmt.Errorf("client: %w: %v", ErrUntrustedBundle, err)
	}
	h := BundleHash(si)
	pinned, old := *p.bundleHash, *p.vault
	changed := pinned != "" && pinned != h
	sameKeys := changed && old.sameKeys(id)

	if id.Insecure && !vt.allowInsecure {
		return nil, nil, fmt.Errorf("client: %w (vault %s)", ErrInsecureVault, strconv.Quote(id.Name))
	}
	var logged *LoggedInfo
	var unlogged error // why the vault is let through unverified
	if vt.pin == nil {
		if !vt.allowInsecure {
			return nil, nil, fmt.Errorf("client: %w (vault %s): pin the policy of the log you trust with `coffer log pin FILE` "+
				"(see README, \"Verifying Coffer\"), or use it unverified with --insecure", ErrNoLogPolicy, strconv.Quote(id.Name))
		}
		unlogged = ErrNoLogPolicy
	} else {
		var known *LoggedInfo
		if !changed && pinned != "" && old != nil {
			known = old.Logged
		}
		var stale string
		logged, stale, err = vt.logged(ctx, conn, si, id, h, known)
		if stale != "" {
			vt.note(p, Notice{Kind: NoticeStaleLog, Vault: id.Name, Logged: logged, Text: fmt.Sprintf(
				"NOTE: vault %s: its host serves an older copy of the release log (%s); checked against this device's own view of the log",
				strconv.Quote(id.Name), stale)})
		}
		switch {
		case err == nil:
		case (errors.Is(err, ErrNotLogged) || errors.Is(err, ErrStaleLog)) && vt.allowUnlogged:
			unlogged = err
		default:
			return nil, nil, err
		}
	}
	// The log judged the bundle, which says what the vault ran when it was
	// provisioned (a revoked or unlogged one is named as such, first); the
	// status says what it runs now, and must agree before anything is
	// pinned or offered for consent.
	st, err := fetchStatus(ctx, conn, id)
	if err != nil {
		return nil, nil, err
	}
	upgrade := sameKeys && logged != nil
	floor := old.releaseFloor()
	if upgrade && logged.ReleaseVersion <= floor {
		was := fmt.Sprintf("release version %d", floor)
		if old.Logged != nil && old.Logged.ReleaseVersion == floor {
			was = fmt.Sprintf("release %s (version %d)", strconv.Quote(old.Logged.ReleaseName), floor)
		}
		return nil, nil, fmt.Errorf("client: %w: vault %s, with the pinned keys, now serves bundle %s of release %s (version %d, firmware %x), "+
			"but it was pinned at %s: an upgrade goes to a higher version; the device was booted back into an older release, "+
			"or its host serves an old bundle; refused",
			ErrDowngrade, strconv.Quote(id.Name), h, strconv.Quote(logged.ReleaseName), logged.ReleaseVersion, id.FirmwareHash, was)
	}
	if changed && !upgrade {
		if err := vt.consent(p, id, h, logged); err != nil {
			return nil, nil, err
		}
	}

	switch {
	case errors.Is(unlogged, ErrNoLogPolicy):
		vt.note(p, Notice{Kind: NoticeUnverified, Vault: id.Name, Text: fmt.Sprintf(
			"WARNING: vault %s is NOT checked against a release log (no policy pinned; `coffer log pin FILE` pins one); continuing only because insecure vaults are allowed",
			strconv.Quote(id.Name))})
	case errors.Is(unlogged, ErrStaleLog):
		vt.note(p, Notice{Kind: NoticeUnlogged, Vault: id.Name, Text: fmt.Sprintf(
			"INSECURE: vault %s is NOT checked against a fresh release log (%s); continuing only because of --insecure",
			strconv.Quote(id.Name), unlogged)})
	case unlogged != nil:
		vt.note(p, Notice{Kind: NoticeUnlogged, Vault: id.Name, Text: fmt.Sprintf(
			"INSECURE: vault %s is not in the release log (%s); continuing only because of --insecure",
			strconv.Quote(id.Name), strings.TrimPrefix(unlogged.Error(), "client: "+ErrNotLogged.Error()+": "))})
	}
	if upgrade {
		vt.note(p, Notice{Kind: NoticeUpgraded, Vault: id.Name, Logged: logged, Firmware: id.FirmwareHash, Text: fmt.Sprintf(
			"NOTE: vault %s upgraded to release %s (version %d), firmware %x, logged at index %d (its new identity bundle at index %d); same keys, pin moved",
			strconv.Quote(id.Name), strconv.Quote(logged.ReleaseName), logged.ReleaseVersion, id.FirmwareHash, logged.ReleaseIndex, logged.BundleIndex)})
	}
	if pinned == "" || changed {
		*p.bundleHash = h
		nv := newVaultInfo(id, logged)
		if sameKeys { // the same device: its floor stays, even through an unlogged bundle
			nv.ReleaseFloor = max(nv.ReleaseFloor, floor)
		}
		*p.vault = nv
		if changed && !sameKeys && p.reset != nil {
			p.reset()
		}
		return id, st, nil
	}
	if old == nil { // a configuration holding a hash and nothing else
		*p.vault = newVaultInfo(id, logged)
		return id, st, nil
	}
	if old.AKEKey == "" && old.HPKEKey == "" { // pinned before these were
		old.AKEKey, old.HPKEKey = hex.EncodeToString(id.AKEKey), hex.EncodeToString(id.HPKEKey)
	}
	// A contact that did not find the bundle (let through unlogged) keeps
	// where it was found before: its release version is the floor.
	if vt.pin != nil && logged != nil {
		old.Logged = logged
	}
	old.ReleaseFloor = old.releaseFloor()
	return id, st, nil
}

// releaseFloor is the highest release version the pinned keys were seen to
// run (0: none known, as for a vault never found in a log).
func (v *VaultInfo) releaseFloor() uint64 {
	if v == nil {
		return 0
	}
	f := v.ReleaseFloor
	if v.Logged != nil {
		f = max(f, v.Logged.ReleaseVersion)
	}
	return f
}

func newVaultInfo(id *protocol.Identity, logged *LoggedInfo) *VaultInfo {
	v := &VaultInfo{
		Name:         id.Name,
		Insecure:     id.Insecure,
		MaxLimit:     id.MaxLimit,
		SigningKey:   hex.EncodeToString(id.SigningKey),
		AKEKey:       hex.EncodeToString(id.AKEKey),
		HPKEKey:      hex.EncodeToString(id.HPKEKey),
		FirmwareHash: hex.EncodeToString(id.FirmwareHash),
		Logged:       logged,
	}
	if logged != nil {
		v.ReleaseFloor = logged.ReleaseVersion
	}
	return v
}

// sameKeys reports whether id has all three pinned keys. A pin made before
// the AKE and HPKE keys were kept cannot tell, and says no.
func (v *VaultInfo) sameKeys(id *protocol.Identity) bool {
	if v == nil || v.AKEKey == "" || v.HPKEKey == "" {
		return false
	}
	return strings.EqualFold(v.SigningKey, hex.EncodeToString(id.SigningKey)) &&
		strings.EqualFold(v.AKEKey, hex.EncodeToString(id.AKEKey)) &&
		strings.EqualFold(v.HPKEKey, hex.EncodeToString(id.HPKEKey))
}

func (v *VaultInfo) keys() VaultKeys {
	if v == nil {
		return VaultKeys{}
	}
	return VaultKeys{Signing: v.SigningKey, AKE: v.AKEKey, HPKE: v.HPKEKey}
}

// consent asks the user about a bundle whose keys are not the pinned ones
// (or an upgrade that is not logged): refused without a way to ask.
func (vt *vaultTrust) consent(p vaultPin, id *protocol.Identity, h string, logged *LoggedInfo) error {
	old := *p.vault
	was := "the pinned vault"
	if old != nil {
		was = "vault " + QuoteName(old.Name)
	}
	if vt.accept == nil {
		how := "`coffer vault accept-new-identity` shows both and asks you"
		if p.realm != "" {
			how = "a realm whose vault changed is replaced with `coffer realms repair`"
		}
		return fmt.Errorf("client: %w: pinned %s (%s), now %s from vault %s (firmware %x, insecure=%v), with %s keys. "+
			"A new device or new keys change it; if you expected that, %s",
			ErrBundleChanged, *p.bundleHash, was, h, strconv.Quote(id.Name), id.FirmwareHash, id.Insecure,
			map[bool]string{true: "the same", false: "other"}[old.sameKeys(id)], how)
	}
	change := &IdentityChange{
		Vault: id.Name, Old: old.keys(),
		New:       VaultKeys{Signing: hex.EncodeToString(id.SigningKey), AKE: hex.EncodeToString(id.AKEKey), HPKE: hex.EncodeToString(id.HPKEKey)},
		OldBundle: *p.bundleHash, NewBundle: h, NewLogged: logged, NewFirmware: id.FirmwareHash, NewInsecure: id.Insecure,
	}
	if old != nil {
		change.OldLogged = old.Logged
	}
	if err := vt.accept(change); err != nil {
		return fmt.Errorf("client: the new identity of vault %s was not accepted: %w", strconv.Quote(id.Name), err)
	}
	return nil
}

func (vt *vaultTrust) note(p vaultPin, n Notice) {
	if vt.notice == nil {
		return
	}
	n.Realm = p.realm
	if p.realm != "" {
		// After the tag, so that no notice line reads like the per-realm
		// report lines ("realm NAME: ...") printed after a run.
		tag, rest, _ := strings.Cut(n.Text, ": ")
		n.Text = tag + ": realm " + QuoteName(p.realm) + ", " + rest
	}
	vt.notice(n)
}

// logged brings the log pin up to date and finds the vault's bundle and
// release in it. The log is read from every source of this run at once
// (syncLocked: the pinned log URL, this vault's host, and, for a realm
// set, every realm's host, read before any realm is checked), so that the
// view holds the newest tree any of them serves. known is where the
// vault's entries were found before (the same bundle, pinned): then only
// the revocations are new to check. Errors: the log's own, when this
// vault's host or the pinned URL serves it wrong (releaselog.ErrNotWitnessed,
// ErrInconsistent, ...: the view does not move to it), ErrRevoked,
// ErrStaleLog (a policy's max-age not met), ErrNotLogged.
//
// A host serving an older witnessed checkpoint than the view
// (logcheck.ErrStale: a lagging mirror, as realms' hosts may be) is no
// evidence of a fork: the vault is checked against the view, its
// revocations included, and stale says so. A vault the view holds but that
// was not found in this run's entries is looked for again in the whole
// log, read from a source that serves the view's tree; with none, it is
// ErrNotLogged.
func (vt *vaultTrust) logged(ctx context.Context, conn *Conn, si *protocol.SignedIdentity, id *protocol.Identity, h string, known *LoggedInfo) (logged *LoggedInfo, stale string, err error) {
	vt.mu.Lock()
	defer vt.mu.Unlock()
	policy, err := vt.pin.policy()
	if err != nil {
		return nil, "", fmt.Errorf("client: configuration: %w", err)
	}
	host := vt.hostLog(conn)
	if err := vt.syncLocked(ctx, policy, []logcheck.Named{host}); err != nil {
		return nil, "", fmt.Errorf("client: configuration: %w", err)
	}
	run := vt.run
	pinned, _, _ := vt.pinnedLog()
	if err := run.refused(host.Name, pinned.Name); err != nil {
		return nil, "", err
	}
	if run.unresolved != nil {
		// An identity revocation not resolved to keys could be this
		// vault's: refused, whatever the user allows.
		return nil, "", run.unresolved
	}
	if err := vt.pin.checkRevoked(id, si, h); err != nil {
		return nil, "", err
	}
	hostRead := run.read[host.Name]
	if !run.anyRead() {
		// Nothing says the log lies: it could not be read. The vault
		// is unverified; only remembered revocations were checked.
		return nil, "", fmt.Errorf("client: %w: the release log could not be read: %v", ErrNotLogged, hostRead.Err)
	}
	if run.stale != nil {
		return nil, "", run.staleError(id.Name)
	}
	if errors.Is(hostRead.Err, logcheck.ErrStale) {
		stale = strings.TrimPrefix(hostRead.Err.Error(), logcheck.ErrStale.Error()+": ")
	}
	size := vt.pin.View.Size
	if known != nil && known.BundleIndex < size && known.ReleaseIndex < size {
		return known, stale, nil
	}
	found := find(run.entries, id, si)
	if (found.bundle == nil || found.release == nil) && uint64(len(run.entries)) < size {
		// Not among this run's entries, and the older ones were read
		// once and not kept: read them again (unless remember just did),
		// and believe them only if they hash to the view's root.
		if uint64(len(run.all)) != size {
			srcs := run.atView(host.Name, size)
			if len(srcs) == 0 {
				why := "no source serves the tree of the log this device has seen"
				if hostRead.Err != nil {
					why = hostRead.Err.Error()
				}
				return nil, "", fmt.Errorf("client: %w: %s", ErrNotLogged, why)
			}
			all, err := rescan(ctx, srcs[0], vt.pin.View)
			if err != nil {
				return nil, "", fmt.Errorf("client: the release log, read again from its first entry: %w", err)
			}
			run.all = all
		}
		found = find(run.all, id, si)
	}
	logged, err = found.result(id, h)
	return logged, stale, err
}

// unreadable: the log could not be fetched, as opposed to served and found
// wrong (a bad or unwitnessed checkpoint, entries that do not hash to it,
// an entry that does not parse), which is refused whatever the user allows.
func unreadable(err error) bool {
	for _, bad := range []error{releaselog.ErrInconsistent, releaselog.ErrNotWitnessed, releaselog.ErrBadCheckpoint,
		releaselog.ErrBadPolicy, releaselog.ErrMalformedEntry} {
		if errors.Is(err, bad) {
			return false
		}
	}
	return !errors.Is(err, context.Canceled)
}

// rescan reads entries [0, v.Size) again and checks that they hash to v's
// root: the source is believed in nothing.
func rescan(ctx context.Context, src logcheck.Source, v releaselog.View) ([]logcheck.Logged, error) {
	if v.Size > logcheck.MaxEntriesPerUpdate {
		return nil, fmt.Errorf("the log holds %d entries, more than the %d read at once", v.Size, logcheck.MaxEntriesPerUpdate)
	}
	data, err := src.Entries(ctx, 0, v.Size, v.Size)
	if err != nil {
		return nil, err
	}
	var again releaselog.View
	if err := again.Extend(&releaselog.Checkpoint{Checkpoint: log.Checkpoint{Size: v.Size, Hash: v.Root}}, data); err != nil {
		return nil, err
	}
	out := make([]logcheck.Logged, len(data))
	for i, d := range data {
		e, err := releaselog.ParseEntry(d)
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		out[i] = logcheck.Logged{Index: uint64(i), Entry: e, Data: d}
	}
	return out, nil
}

// remember keeps every revocation among the entries fresh from the log,
// and resolves each identity revocation, new or remembered, to the keys
// of the bundle it names, wherever that bundle is in the log: among fresh
// (before or after the revocation), or further back. The entries before
// fresh were read once and not kept: while an identity revocation was not
// searched for there, the whole log is read again (rescan, believed only
// if it hashes to the view's root) and returned. An error leaves that
// revocation unsearched, and checkRevoked then trusts no vault; so does a
// nil src (no source serves the view's tree) when the log must be read
// again.
func (lp *LogPin) remember(ctx context.Context, src logcheck.Source, fresh []logcheck.Logged) (all []logcheck.Logged, err error) {
	have := map[uint64]bool{}
	for _, r := range lp.Revoked {
		have[r.Index] = true
	}
	whole := len(fresh) > 0 && fresh[0].Index == 0 // nothing before fresh
	for _, l := range fresh {
		if r := l.Entry.Revocation; r != nil && !have[l.Index] {
			lp.Revoked = append(lp.Revoked, &RevokedInfo{Target: r.Target.String(), Hash: hex.EncodeToString(r.Hash), Index: l.Index, Reason: r.Reason,
				Searched: whole && r.Target == releaselog.KindIdentity})
		}
	}
	lp.resolve(fresh)
	for _, r := range lp.Revoked {
		if r.Target != releaselog.KindIdentity.String() || r.Searched {
			continue
		}
		if all == nil {
			if src == nil {
				return nil, fmt.Errorf("client: the release log must be read again from its first entry to find the bundle that the identity revocation at index %d names, "+
					"and no source read in this run serves the tree of the log this device has seen", r.Index)
			}
			if all, err = rescan(ctx, src, lp.View); err != nil {
				return nil, fmt.Errorf("client: the release log, read again from its first entry to find the bundle that the identity revocation at index %d names: %w", r.Index, err)
			}
			lp.resolve(all)
		}
		r.Searched = true
	}
	return all, nil
}

// resolve records, for every identity revocation not yet resolved, the
// keys of a bundle among entries that it names.
func (lp *LogPin) resolve(entries []logcheck.Logged) {
	for _, l := range entries {
		si := l.Entry.Identity
		if si == nil {
			continue
		}
		h := hex.EncodeToString(releaselog.BundleHash(si))
		for _, r := range lp.Revoked {
			if r.Target != releaselog.KindIdentity.String() || r.Keys != nil || !strings.EqualFold(r.Hash, h) {
				continue
			}
			k, err := releaselog.KeysOf(si)
			if err != nil {
				continue // ParseEntry decoded it: cannot happen
			}
			r.Keys = &RevokedKeys{BundleIndex: l.Index, SigningKey: hex.EncodeToString(k.Signing),
				AKEKey: hex.EncodeToString(k.AKE), HPKEKey: hex.EncodeToString(k.HPKE)}
		}
	}
}

// checkRevoked refuses a vault whose release or bundle the log revokes, or
// that carries any key of a revoked identity (under any bundle). While an
// identity revocation is not resolved to keys nor searched for in the
// whole log, it could be this vault's: no vault is trusted.
func (lp *LogPin) checkRevoked(id *protocol.Identity, si *protocol.SignedIdentity, h string) error {
	if r := lp.revoked(releaselog.KindRelease, id.FirmwareHash); r != nil {
		return fmt.Errorf("client: %w: the release with firmware %x that vault %s runs is revoked by the log's entry at index %d: %q",
			ErrRevoked, id.FirmwareHash, strconv.Quote(id.Name), r.Index, r.Reason)
	}
	if r := lp.revoked(releaselog.KindIdentity, releaselog.BundleHash(si)); r != nil {
		return fmt.Errorf("client: %w: the identity bundle %s of vault %s is revoked by the log's entry at index %d: %q",
			ErrRevoked, h, strconv.Quote(id.Name), r.Index, r.Reason)
	}
	for _, r := range lp.Revoked {
		if r.Target != releaselog.KindIdentity.String() {
			continue
		}
		if r.Keys == nil {
			if !r.Searched {
				return fmt.Errorf("client: the release log revokes an identity (its entry at index %d: %q) whose bundle this device has not yet looked for in the whole log, "+
					"so it cannot tell whether vault %s is that identity; refused until the log can be read again from its first entry", r.Index, r.Reason, strconv.Quote(id.Name))
			}
			continue
		}
		if k := r.Keys.identityKeys(); k != nil {
			if role := k.Shared(id); role != "" {
				return fmt.Errorf("client: %w: vault %s (bundle %s) carries the %s key of the identity bundle %s logged at index %d, whose keys the log's entry at index %d revokes: %q",
					ErrRevoked, strconv.Quote(id.Name), h, role, r.Hash, r.Keys.BundleIndex, r.Index, r.Reason)
			}
		}
	}
	return nil
}

// findings is what find found of a vault in the log.
type findings struct {
	bundle, release *logcheck.Logged
	// otherSignature is an identity entry with the bundle's body but
	// another signature: not the bundle the vault serves.
	otherSignature *logcheck.Logged
	// otherBoard is a release with the vault's firmware hash for a board
	// its bundle contradicts.
	otherBoard *logcheck.Logged
}

// find looks for the identity entry that holds si exactly (its body and
// its signature: the bundle served is the one logged, so what anyone reads
// in the log is what this client trusted) and a release entry of id's
// firmware for a board that agrees with id's insecure flag (a hardware
// bundle's firmware must be a usbarmory release; an insecure one's a qemu
// or software release).
func find(entries []logcheck.Logged, id *protocol.Identity, si *protocol.SignedIdentity) findings {
	var f findings
	for i := range entries {
		l := &entries[i]
		switch e := l.Entry; {
		case e.Identity != nil && f.bundle == nil && bytes.Equal(e.Identity.Body, si.Body):
			if bytes.Equal(e.Identity.Signature, si.Signature) {
				f.bundle = l
			} else if f.otherSignature == nil {
				f.otherSignature = l
			}
		case e.Release != nil && f.release == nil && bytes.Equal(e.Release.Firmware, id.FirmwareHash):
			if (e.Release.Board == "usbarmory") == !id.Insecure {
				f.release = l
			} else if f.otherBoard == nil {
				f.otherBoard = l
			}
		}
	}
	return f
}

func (f findings) result(id *protocol.Identity, h string) (*LoggedInfo, error) {
	var missing []string
	if f.bundle == nil {
		s := fmt.Sprintf("no identity entry holds the bundle %s of vault %s", h, strconv.Quote(id.Name))
		if o := f.otherSignature; o != nil {
			s += fmt.Sprintf(" as it is served (the identity entry at index %d holds its body with another signature)", o.Index)
		}
		missing = append(missing, s)
	}
	if f.release == nil {
		s := fmt.Sprintf("no release entry has the firmware %x that vault %s reports", id.FirmwareHash, strconv.Quote(id.Name))
		if o := f.otherBoard; o != nil {
			s += fmt.Sprintf(" for its board (the release at index %d with that firmware is for board %s, but the bundle says insecure=%v)",
				o.Index, QuoteName(o.Entry.Release.Board), id.Insecure)
		}
		missing = append(missing, s)
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("client: %w: %s", ErrNotLogged, strings.Join(missing, "; "))
	}
	r := f.release.Entry.Release
	return &LoggedInfo{BundleIndex: f.bundle.Index, ReleaseIndex: f.release.Index, ReleaseName: r.Name, ReleaseVersion: r.Version, Board: r.Board}, nil
}
