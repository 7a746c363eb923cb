package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/cofferhsm/coffer/internal/notekey"
)

func keygen(_ context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	origin := fs.String("origin", "", "the log's origin (e.g. example.org/coffer/releases); the key is named after it")
	out := fs.String("o", "", "write the private key here (refuses to overwrite; mode 0600)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *origin == "" {
		return fmt.Errorf("keygen: -origin is required")
	}
	vkey, err := notekey.New(*out, *origin, "coffer release key (note skey). Signs the release log's checkpoints; not the provisioning key.")
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "release key: %s\n", vkey)
	return nil
}

func printPolicy(_ context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	p := addPolicyFlags(fs)
	maxAge := fs.Duration("max-age", 0, "how old a checkpoint's witnessing may be for a client to accept it, e.g. 168h "+
		"(run `refresh` well within it, e.g. daily); 0: no bound")
	if err := fs.Parse(args); err != nil {
		return err
	}
	pol, _, err := p.policy()
	if err != nil {
		return err
	}
	pol.MaxAge = *maxAge
	if err := pol.Check(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "# coffer release log policy: pin it in clients and the bootloader\n%s", pol.String())
	return nil
}
