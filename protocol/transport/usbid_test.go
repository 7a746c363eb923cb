package transport

import (
	"testing"

	"github.com/cofferhsm/coffer/board/usbarmory"
)

// serial:auto must look for the ids the firmware presents.
func TestDefaultUSBIDMatchesTheFirmware(t *testing.T) {
	if DefaultUSBID.Vendor != usbarmory.USBVendorID || DefaultUSBID.Product != usbarmory.USBProductID {
		t.Fatalf("serial:auto looks for %s, the firmware presents %04x:%04x", DefaultUSBID, usbarmory.USBVendorID, usbarmory.USBProductID)
	}
}
