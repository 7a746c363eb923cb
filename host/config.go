package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// DeviceSpec is one vault device in the configuration: `[NAME=]soft[:DIR]`,
// `[NAME=]unix:PATH` or `[NAME=]serial:PATH|auto`.
type DeviceSpec struct {
	Name string
	Kind string // soft, unix, serial
	Arg  string // the folder, socket path or port ("auto")
}

// DefaultSoftDir is the software vault's state folder for a bare `soft`,
// relative to the working directory.
const DefaultSoftDir = "cofferd-softvault"

func (s DeviceSpec) String() string { return s.Name + "=" + s.Kind + ":" + s.Arg }

// ParseDeviceSpecs reads a comma-separated list of device specs. Devices
// without a name are named vault0, vault1, … by position.
func ParseDeviceSpecs(list string) ([]DeviceSpec, error) {
	var specs []DeviceSpec
	seen := map[string]bool{}
	for i, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		s := DeviceSpec{Name: fmt.Sprintf("vault%d", i)}
		if name, rest, ok := strings.Cut(item, "="); ok {
			s.Name, item = name, rest
		}
		if !deviceNameRE.MatchString(s.Name) {
			return nil, fmt.Errorf("device name %q: use 1 to 32 of A-Z a-z 0-9 . _ -", s.Name)
		}
		if seen[s.Name] {
			return nil, fmt.Errorf("device %q configured twice", s.Name)
		}
		seen[s.Name] = true
		s.Kind, s.Arg, _ = strings.Cut(item, ":")
		switch s.Kind {
		case "soft":
			if s.Arg == "" {
				s.Arg = DefaultSoftDir
			}
		case "unix", "serial":
			if s.Arg == "" {
				return nil, fmt.Errorf("device %s: %s needs a path", s.Name, s.Kind)
			}
		default:
			return nil, fmt.Errorf("device %q: want soft[:DIR], unix:PATH or serial:PATH|auto", item)
		}
		specs = append(specs, s)
	}
	if len(specs) == 0 {
		return nil, errors.New("no vault device configured")
	}
	return specs, nil
}

// OpenOptions are what OpenDevices needs besides the specs.
type OpenOptions struct {
	USBID  USBID // for serial:auto; DefaultUSBID if zero
	Stream StreamOptions
	Log    *slog.Logger
}

// OpenDevices opens every device in specs. Stream devices connect in the
// background; a software vault is opened at once.
func OpenDevices(ctx context.Context, specs []DeviceSpec, opts OpenOptions) ([]Device, error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.USBID == (USBID{}) {
		opts.USBID = DefaultUSBID
	}
	var devs []Device
	closeAll := func() {
		for _, d := range devs {
			d.Close()
		}
	}
	for _, s := range specs {
		so := opts.Stream
		so.Log = opts.Log
		so.Kind, so.Address = s.Kind, s.Arg
		switch s.Kind {
		case "soft":
			d, err := OpenSoftDevice(ctx, s.Name, s.Arg, opts.Log)
			if err != nil {
				closeAll()
				return nil, err
			}
			devs = append(devs, d)
		case "unix":
			devs = append(devs, NewStreamDevice(s.Name, UnixDialer(s.Arg), so))
		case "serial":
			if s.Arg == "auto" {
				so.Address = "auto " + opts.USBID.String()
			}
			opts.Log.Warn("serial vault devices are untested on hardware", "device", s.Name, "port", so.Address)
			devs = append(devs, NewStreamDevice(s.Name, SerialDialer(s.Arg, opts.USBID), so))
		}
	}
	return devs, nil
}
