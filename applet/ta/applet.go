package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	taruntime "github.com/cofferhsm/coffer/applet/runtime"
	"github.com/cofferhsm/coffer/applet/startup"
	"github.com/cofferhsm/coffer/applet/store"
	"github.com/cofferhsm/coffer/applet/vault"
	"github.com/cofferhsm/coffer/firmware/api"
	"github.com/cofferhsm/coffer/protocol"
)

// maxInFlight bounds the requests handled at once; the OS bounds them too,
// so a request beyond it is answered "busy" at once rather than queued.
const maxInFlight = 32

// cacheNodes bounds the store's node cache (about 6 KiB each) to fit the
// applet's memory.
const cacheNodes = 1024

// run serves until the OS stops the applet. It returns only on a failure of
// the call interface itself.
func run(ctx context.Context, o *taruntime.OS) error {
	cfg, err := o.Config()
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(&lineWriter{o: o}, &slog.HandlerOptions{
		Level: slog.LevelInfo,
		// The OS stamps each line; the applet's clock starts at its boot.
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	h, status := open(ctx, o, cfg, log)
	h = testHook(h)
	cfg.Wipe()
	if err := o.Ready(status); err != nil {
		return err
	}
	return serve(ctx, o, h, log)
}

// open opens the store and the vault, creating them on the first boot (and
// completing a first boot a power cut interrupted: applet/startup), or
// returns a handler that refuses service, and a status line for the console.
func open(ctx context.Context, o *taruntime.OS, cfg *api.Config, log *slog.Logger) (protocol.Handler, string) {
	anchor := o.Anchor()
	name := "coffer"
	if cfg.Board != "" {
		name += "-" + cfg.Board
	}
	v, err := startup.Open(ctx, o.Device(cfg.Sectors), anchor, startup.Options{
		Store: store.Options{
			SealingKey:        cfg.StoreKey,
			MinAnchorInterval: time.Duration(cfg.MinAnchorMillis) * time.Millisecond,
			CacheNodes:        cacheNodes,
		},
		Vault: vault.Options{
			Log:          log,
			MaxLimit:     uint(cfg.MaxLimit),
			Insecure:     cfg.Flags&api.FlagInsecure != 0,
			FirmwareHash: bytes.Clone(cfg.FirmwareHash[:]),
			Name:         name,
			AnchorWrites: func() uint64 { return uint64(anchor.WriteCounter()) },
		},
		// The device has no other way to be set up: its first boot
		// creates the vault. On hardware only the OS can write the
		// anchor, so "never written" means a new device.
		Create: true,
	})
	if err != nil {
		log.Error("open", "err", err)
		return refuse(err), "REFUSING SERVICE: " + err.Error()
	}
	if v.Formatted {
		log.Info("formatted a new store", "sectors", cfg.Sectors)
	}
	if v.Created {
		log.Info("created the vault's identity")
	}
	if cfg.Flags&api.FlagDevProvisioning != 0 {
		if err := selfProvision(ctx, v.Vault, cfg.DevProvisioningSeed); err != nil {
			log.Error("development provisioning", "err", err)
		}
	}
	go expire(v.Vault)
	stats := v.Store.Stats()
	status := fmt.Sprintf("serving: store sequence %d, %d records, anchor counter %d", stats.Seq, stats.Records, stats.WriteCounter)
	if v.Formatted {
		status += " (new store)"
	}
	if cfg.Flags&api.FlagInsecure != 0 {
		status += " [INSECURE]"
	}
	return v.Handle, status
}

// refuse answers every request with the error that keeps the vault closed.
func refuse(cause error) protocol.Handler {
	code, msg := protocol.CodeUnavailable, "storage failed; the vault fails closed"
	var t interface{ Tampered() bool }
	switch {
	case errors.Is(cause, api.ETAMPERED):
		code, msg = protocol.CodeTampered, "service refused: the RPMB anchor failed the device's integrity checks"
	case errors.Is(cause, vault.ErrTampered) || (errors.As(cause, &t) && t.Tampered()):
		code, msg = protocol.CodeTampered, "service refused: the store failed its integrity check"
	}
	reply := protocol.EncodeError(protocol.Errorf(code, "%s", msg))
	return func(context.Context, []byte) []byte { return reply }
}

// selfProvision signs the vault's identity with the development provisioning
// key unless a matching bundle is installed. Only emulated, insecure boards
// have such a key.
func selfProvision(ctx context.Context, v *vault.Vault, seed [32]byte) error {
	req, err := protocol.Encode(protocol.TypeIdentity, &protocol.Empty{})
	if err != nil {
		return err
	}
	var have protocol.SignedIdentity
	if protocol.Decode(v.Handle(ctx, req), protocol.TypeIdentity, &have) == nil {
		return nil
	}
	key := ed25519.NewKeyFromSeed(seed[:])
	defer clear(key)
	signed, err := protocol.SignIdentity(key, v.Identity())
	if err != nil {
		return err
	}
	return v.InstallIdentity(ctx, signed)
}

func expire(v *vault.Vault) {
	for {
		time.Sleep(10 * time.Second)
		v.Expire()
	}
}

// serve takes requests from the OS and answers each in its own goroutine.
func serve(ctx context.Context, o *taruntime.OS, h protocol.Handler, log *slog.Logger) error {
	buf := make([]byte, api.MaxMessage)
	busy := protocol.EncodeError(protocol.Errorf(protocol.CodeBusy, "too many requests in flight"))
	var inFlight atomic.Int32
	for {
		tag, req, err := o.Recv(buf)
		if err != nil {
			if errors.Is(err, api.ECLOSED) {
				return err
			}
			log.Error("receive", "err", err)
			o.WaitRequest()
			continue
		}
		if req == nil {
			o.WaitRequest()
			continue
		}
		if inFlight.Load() >= maxInFlight {
			o.Send(tag, busy)
			continue
		}
		inFlight.Add(1)
		req = bytes.Clone(req)
		go func() {
			defer inFlight.Add(-1)
			if err := o.Send(tag, h(ctx, req)); err != nil {
				log.Error("send", "err", err)
			}
		}()
	}
}

// lineWriter sends slog's lines to the OS console.
type lineWriter struct {
	o *taruntime.OS
}

func (w *lineWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte("\n")) {
		w.o.Log(string(line))
	}
	return len(p), nil
}
