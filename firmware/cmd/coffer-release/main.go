// Command coffer-release is the release log operator's tool: it holds the
// release key (never the provisioning key) that signs the log's
// checkpoints, and adds releases, vault identities and revocations to the
// log (internal/releasewriter: tessera POSIX, k of n witnesses). Each add
// returns only once a checkpoint covering it is cosigned by the quorum.
//
//	coffer-release keygen -origin ORIGIN -o FILE
//	        make the release key (named after the log's origin); prints its vkey
//	coffer-release policy -key FILE -witness VKEY[=URL] … -quorum K [-max-age D]
//	        print the policy clients and the bootloader pin
//	coffer-release add-release LOG -version N -name NAME -commit C -toolchain T -board B
//	        -os ELF -applet ELF [-boot-image IMX]
//	coffer-release add-identity LOG -bundle FILE -provisioning-key HEX
//	coffer-release revoke LOG (-release HEX | -identity HEX) -reason TEXT
//	coffer-release refresh LOG
//	        have the unchanged checkpoint cosigned again (a quiet log stays
//	        fresh for policies with a max-age; run it from cron)
//	coffer-release proof -log DIR -policy FILE -firmware HEX -o FILE
//	coffer-release list -log DIR -policy FILE
//
// where LOG is -log DIR -key FILE -witness VKEY=URL … -quorum K: the log's
// folder, the release key, each witness (its cosignature/v1 key and the
// base URL of its tlog-witness endpoint; repeat the flag) and how many
// must cosign. The witnesses and quorum must be those of the policy
// clients pin; the policy is derived from them and the key every time.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/klog/v2"

	"github.com/cofferhsm/coffer/internal/buildinfo"
)

func main() {
	if len(os.Args) > 1 && buildinfo.IsVersionFlag(os.Args[1]) {
		fmt.Print(buildinfo.Line("coffer-release"))
		return
	}
	// tessera logs its retries through klog; the operator gets one clear
	// error per command instead.
	klog.LogToStderr(false)
	klog.SetOutput(io.Discard)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "coffer-release:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage: coffer-release keygen|policy|add-release|add-identity|revoke|refresh|proof|list … (see -h of each)")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errUsage
	}
	fs := flag.NewFlagSet("coffer-release "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	cmd, ok := commands[args[0]]
	if !ok {
		return errUsage
	}
	return cmd(ctx, fs, args[1:], stdout)
}

var commands = map[string]func(context.Context, *flag.FlagSet, []string, io.Writer) error{
	"keygen":       keygen,
	"policy":       printPolicy,
	"add-release":  addRelease,
	"add-identity": addIdentity,
	"revoke":       revoke,
	"refresh":      refresh,
	"proof":        writeProof,
	"list":         list,
}
