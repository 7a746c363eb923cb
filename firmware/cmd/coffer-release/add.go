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
	"os"
	"time"

	"github.com/cofferhsm/coffer/internal/releasewriter"
	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/releaselog"
)

// add logs e (after check passes on the log's current entries) and reports
// where it went and who cosigned the checkpoint.
func add(ctx context.Context, lf *logFlags, e *releaselog.Entry, check func(*logged, *releaselog.Checkpoint) (string, error), stdout io.Writer) (err error) {
	l, err := lf.open(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := l.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	data, err := e.Marshal()
	if err != nil {
		return err
	}
	all, err := l.Entries(ctx)
	if err != nil {
		return err
	}
	already := false
	for _, d := range all {
		already = already || bytes.Equal(d, data)
	}
	if already {
		// An earlier add that was not witnessed in time: wait for it, do
		// not log it again (and do not refuse it as a repeat).
		fmt.Fprintln(stdout, "this entry is already in the log; waiting for a witnessed checkpoint that covers it")
	} else {
		dec, err := decode(all)
		if err != nil {
			return err
		}
		cp, err := l.Checkpoint(ctx)
		if err != nil {
			return err
		}
		note, err := check(dec, cp)
		if err != nil {
			return err
		}
		if note != "" {
			fmt.Fprintln(stdout, note)
		}
	}
	idx, raw, err := l.Add(ctx, e)
	if err != nil {
		return err
	}
	cp, err := l.Policy().VerifyCheckpoint(raw)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "logged %s at index %d\ncheckpoint: size %d, root %x, cosigned by %q\n", describe(e), idx, cp.Size, cp.Hash, cp.Witnessed)
	return nil
}

func addRelease(ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	lf := addLogFlags(fs)
	version := fs.Uint64("version", 0, "release number: above every release already logged for the board (the boot chain's anti-rollback)")
	name := fs.String("name", "", "human name, e.g. v0.4.0")
	commit := fs.String("commit", "", "source commit (hex)")
	toolchain := fs.String("toolchain", "", "toolchain a verifier rebuilds with, e.g. tamago-go1.26.0")
	board := fs.String("board", "", "usbarmory, qemu or software")
	osELF := fs.String("os", "", "the unsigned OS ELF (what the bootloader measures; for software: the softvault binary)")
	appletELF := fs.String("applet", "", "the applet ELF")
	bootImage := fs.String("boot-image", "", "the unsigned bootloader image, coffer-boot.imx from make imx (optional)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *osELF == "" || *appletELF == "" {
		return errors.New("add-release: -os and -applet are required")
	}
	r := &releaselog.Release{Version: *version, Name: *name, Commit: *commit, Toolchain: *toolchain, Board: *board}
	var err error
	if r.Firmware, err = hashFile(*osELF); err != nil {
		return err
	}
	if r.Applet, err = hashFile(*appletELF); err != nil {
		return err
	}
	if *bootImage != "" {
		if r.BootImage, err = hashFile(*bootImage); err != nil {
			return err
		}
	}
	e := &releaselog.Entry{Kind: releaselog.KindRelease, Release: r}
	return add(ctx, lf, e, func(l *logged, _ *releaselog.Checkpoint) (string, error) {
		if top := l.highestVersion(r.Board); r.Version <= top {
			return "", fmt.Errorf("add-release: version %d is not above %d, the highest already logged for %s", r.Version, top, r.Board)
		}
		return "", nil
	}, stdout)
}

func addIdentity(ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	lf := addLogFlags(fs)
	bundleFile := fs.String("bundle", "", "the signed identity bundle (coffer-provision sign/device)")
	provKey := fs.String("provisioning-key", "", "the provisioning public key clients pin (hex)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	pub, err := hex.DecodeString(*provKey)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("add-identity: -provisioning-key wants %d hex bytes", ed25519.PublicKeySize)
	}
	b, err := os.ReadFile(*bundleFile)
	if err != nil {
		return err
	}
	var si protocol.SignedIdentity
	if err := protocol.Unmarshal(b, &si); err != nil {
		return fmt.Errorf("%s: %w", *bundleFile, err)
	}
	id, err := si.Verify(ed25519.PublicKey(pub))
	if err != nil {
		return fmt.Errorf("add-identity: %s is not signed by provisioning key %s: %w", *bundleFile, *provKey, err)
	}
	e := &releaselog.Entry{Kind: releaselog.KindIdentity, Identity: &si}
	return add(ctx, lf, e, func(l *logged, cp *releaselog.Checkpoint) (string, error) {
		// Only a release a witnessed checkpoint already covers counts.
		idx, r, ok := l.newestRelease(id.FirmwareHash, cp.Size)
		if !ok {
			return "", fmt.Errorf("add-identity: the vault runs firmware %x, which is not a logged release (add-release it first)", id.FirmwareHash)
		}
		if why, bad := l.revoked(releaselog.KindRelease, id.FirmwareHash); bad {
			return "", fmt.Errorf("add-identity: the vault runs release %s (firmware %x), which is revoked: %q", r.Name, id.FirmwareHash, why)
		}
		if why := l.revokedKeys(id, releaselog.BundleHash(&si)); why != "" {
			return "", fmt.Errorf("add-identity: the bundle carries a revoked identity's keys: %s; a revoked vault is never logged again, provision new keys", why)
		}
		if (r.Board == "software" || r.Board == "qemu") && !id.Insecure {
			return "", fmt.Errorf("add-identity: the bundle claims hardware-protected keys, but its firmware is a %s release: refusing to log a software vault as secure", r.Board)
		}
		return fmt.Sprintf("bundle %x verified: signed by provisioning key %s; vault %q runs release %s (version %d, %s, index %d), logged and not revoked; its keys are no revoked identity's (insecure=%v)",
			releaselog.BundleHash(&si), *provKey, id.Name, r.Name, r.Version, r.Board, idx, id.Insecure), nil
	}, stdout)
}

func revoke(ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	lf := addLogFlags(fs)
	rel := fs.String("release", "", "revoke the release with this firmware hash (hex)")
	ident := fs.String("identity", "", "revoke the identity bundle with this hash (hex, as list prints it)")
	reason := fs.String("reason", "", "why (public)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if (*rel == "") == (*ident == "") || *reason == "" {
		return errors.New("revoke: give one of -release or -identity, and -reason")
	}
	rv := &releaselog.Revocation{Target: releaselog.KindRelease, Reason: *reason}
	var err error
	if *rel != "" {
		rv.Hash, err = parseHash("release", *rel)
	} else {
		rv.Target = releaselog.KindIdentity
		rv.Hash, err = parseHash("identity", *ident)
	}
	if err != nil {
		return err
	}
	e := &releaselog.Entry{Kind: releaselog.KindRevocation, Revocation: rv}
	return add(ctx, lf, e, func(l *logged, _ *releaselog.Checkpoint) (string, error) {
		found := false
		if rv.Target == releaselog.KindRelease {
			_, _, found = l.newestRelease(rv.Hash, uint64(len(l.entries)))
		} else {
			found = l.hasIdentity(rv.Hash)
		}
		if !found {
			return "", fmt.Errorf("revoke: no logged %v has hash %x", rv.Target, rv.Hash)
		}
		if why, done := l.revoked(rv.Target, rv.Hash); done {
			return "", fmt.Errorf("revoke: that %v is already revoked (%q)", rv.Target, why)
		}
		return "", nil
	}, stdout)
}

// refresh has the log's checkpoint cosigned again, with no new entry:
// clients whose policy has a max-age refuse a checkpoint its witnesses
// cosigned longer ago, so the operator of a quiet log runs this from cron
// well within it.
func refresh(ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) (err error) {
	lf := addLogFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	l, err := lf.openWith(ctx, func(c *releasewriter.Config) { c.RepublishInterval = c.CheckpointInterval })
	if err != nil {
		return err
	}
	defer func() {
		if cerr := l.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	cp, err := l.Refresh(ctx)
	if err != nil {
		return err
	}
	at, _ := cp.WitnessedAt(l.Policy().Quorum, time.Now())
	fmt.Fprintf(stdout, "checkpoint: size %d, root %x, cosigned again by %q; %d of them by %s\n",
		cp.Size, cp.Hash, cp.Witnessed, l.Policy().Quorum, at.UTC().Format(time.RFC3339))
	return nil
}
