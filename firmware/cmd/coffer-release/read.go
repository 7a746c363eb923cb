package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/cofferhsm/coffer/internal/releasewriter"
	"github.com/cofferhsm/coffer/protocol/releaselog"
)

func writeProof(ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	dir := fs.String("log", "", "the log's folder")
	policyFile := fs.String("policy", "", "the log's policy (as `policy` prints it)")
	fw := fs.String("firmware", "", "the release's firmware hash (SHA-256 of the unsigned OS ELF, hex)")
	out := fs.String("o", "", "write the proof bundle here")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("proof: -o is required")
	}
	p, err := readPolicy(*policyFile)
	if err != nil {
		return err
	}
	hash, err := parseHash("firmware", *fw)
	if err != nil {
		return err
	}
	s, err := releasewriter.Read(ctx, *dir, p)
	if err != nil {
		return err
	}
	l, err := decode(s.Entries)
	if err != nil {
		return err
	}
	idx, r, ok := l.newestRelease(hash, s.Checkpoint.Size)
	if !ok {
		return fmt.Errorf("proof: no release with firmware %x is covered by the log's checkpoint (size %d)", hash, s.Checkpoint.Size)
	}
	if why, bad := l.revoked(releaselog.KindRelease, hash); bad {
		return fmt.Errorf("proof: release %s (firmware %x) is revoked: %q", r.Name, hash, why)
	}
	pr, err := s.Proof(ctx, idx)
	if err != nil {
		return err
	}
	b, err := pr.Marshal()
	if err != nil {
		return err
	}
	if err := os.WriteFile(*out, b, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "proof bundle of release %s (version %d, %s, index %d) in a checkpoint of size %d cosigned by %q → %s (verified with the policy)\n",
		r.Name, r.Version, r.Board, idx, s.Checkpoint.Size, s.Checkpoint.Witnessed, *out)
	return nil
}

func list(ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	dir := fs.String("log", "", "the log's folder")
	policyFile := fs.String("policy", "", "the log's policy (as `policy` prints it)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	p, err := readPolicy(*policyFile)
	if err != nil {
		return err
	}
	s, err := releasewriter.Read(ctx, *dir, p)
	if err != nil {
		return err
	}
	l, err := decode(s.Entries)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "checkpoint: %s size %d, root %x, cosigned by %q\n", s.Checkpoint.Origin, s.Checkpoint.Size, s.Checkpoint.Hash, s.Checkpoint.Witnessed)
	for i, e := range l.entries {
		fmt.Fprintf(stdout, "%d: %s\n", i, describe(e))
	}
	return nil
}
