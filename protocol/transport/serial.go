package transport

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	"go.bug.st/serial"
	"go.bug.st/serial/enumerator"
)

// USBID is a USB vendor and product id, as "VVVV:PPPP" in hex.
type USBID struct{ Vendor, Product uint16 }

// DefaultUSBID is what `serial:auto` looks for unless told otherwise:
// 1209:2702, the USB armory's pid.codes id, which the Coffer firmware
// presents (board/usbarmory.USBVendorID, USBProductID; a test keeps them
// equal). cofferd takes -usb-id for anything else.
var DefaultUSBID = USBID{0x1209, 0x2702}

func (u USBID) String() string { return fmt.Sprintf("%04x:%04x", u.Vendor, u.Product) }

// ParseUSBID reads "VVVV:PPPP".
func ParseUSBID(s string) (USBID, error) {
	v, p, ok := strings.Cut(s, ":")
	vv, err1 := strconv.ParseUint(v, 16, 16)
	pp, err2 := strconv.ParseUint(p, 16, 16)
	if !ok || err1 != nil || err2 != nil {
		return USBID{}, fmt.Errorf("USB id %q: want VVVV:PPPP in hex", s)
	}
	return USBID{uint16(vv), uint16(pp)}, nil
}

// SerialDialer opens a USB armory's CDC-ACM serial port: path, or with path
// "auto" the one USB serial port whose VID:PID is id (found anew on every
// dial, since a rebooted device may come back under another name). Several
// matching ports are refused as ambiguous: name each device by its
// /dev/serial/by-id/ path instead.
//
// Untested on hardware: it has been exercised only against the enumerator's
// view of this machine and pseudo-terminals.
func SerialDialer(path string, id USBID) Dialer {
	return func(ctx context.Context) (io.ReadWriteCloser, error) {
		p := path
		if p == "auto" {
			var err error
			if p, err = findSerial(id); err != nil {
				return nil, err
			}
		}
		// CDC-ACM ignores the line settings; they matter for a real UART.
		port, err := serial.Open(p, &serial.Mode{BaudRate: 115200, DataBits: 8, Parity: serial.NoParity, StopBits: serial.OneStopBit})
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", p, err)
		}
		return port, nil
	}
}

func findSerial(id USBID) (string, error) {
	ports, err := enumerator.GetDetailedPortsList()
	if err != nil {
		return "", fmt.Errorf("listing serial ports: %w", err)
	}
	var found []string
	for _, p := range ports {
		if !p.IsUSB {
			continue
		}
		v, err1 := strconv.ParseUint(p.VID, 16, 16)
		pp, err2 := strconv.ParseUint(p.PID, 16, 16)
		if err1 == nil && err2 == nil && uint16(v) == id.Vendor && uint16(pp) == id.Product {
			found = append(found, p.Name)
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("no USB serial port with id %s", id)
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("%d USB serial ports with id %s (%s): name each device by path", len(found), id, strings.Join(found, ", "))
}
