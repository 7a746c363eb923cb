//go:build tamago && board_usbarmory && arm

package usbarmory

import (
	"errors"
	"time"

	"github.com/usbarmory/tamago/soc/nxp/usb"
)

// USB CDC-ACM transport: a serial port on the host (/dev/ttyACM*).
//
// NOT YET TESTED ON HARDWARE: QEMU does not emulate the i.MX6 USB device
// controller, so this code has only been compiled.
//
// Interface 0 is the ACM control interface (with a notification endpoint
// that never sends), interface 1 the data interface with one bulk endpoint
// each way. Line coding is ignored (there is no line): GET_LINE_CODING
// answers 115200 8N1, SET_CONTROL_LINE_STATE is accepted, SET_LINE_CODING is
// stalled (the Mk II driver offers no way to take its data stage; the ACM
// descriptor advertises no line coding support, so hosts need not send it).

// CDC class requests (USB CDC PSTN 1.2, Table 13).
const (
	acmSetLineCoding       = 0x20
	acmGetLineCoding       = 0x21
	acmSetControlLineState = 0x22
	acmSendBreak           = 0x23
)

const (
	bulkPacket = 512 // high speed
	maxQueued  = 64  // packets in each direction
)

type acm struct {
	rx      chan []byte // packets from the host
	tx      chan []byte // writes to the host
	pending []byte      // rest of the packet being read
}

func startACM(hw *usb.USB) (*acm, error) {
	if hw == nil {
		return nil, errors.New("usb: no controller")
	}
	a := &acm{rx: make(chan []byte, maxQueued), tx: make(chan []byte, maxQueued)}
	dev, err := a.device()
	if err != nil {
		return nil, err
	}
	hw.Init()
	hw.DeviceMode()
	hw.Reset()
	go hw.Start(dev) // never returns
	return a, nil
}

func (a *acm) device() (*usb.Device, error) {
	dev := &usb.Device{Setup: a.setup}
	dev.Descriptor = &usb.DeviceDescriptor{}
	dev.Descriptor.SetDefaults()
	dev.Descriptor.DeviceClass = usb.COMMUNICATION_DEVICE_CLASS
	// Set explicitly, not left to tamago's defaults: cofferd's serial:auto
	// finds the vault by these ids (transport.DefaultUSBID in protocol/transport).
	dev.Descriptor.VendorId, dev.Descriptor.ProductId = USBVendorID, USBProductID
	if err := dev.SetLanguageCodes([]uint16{0x0409}); err != nil {
		return nil, err
	}
	var err error
	if dev.Descriptor.Manufacturer, err = dev.AddString("Coffer"); err != nil {
		return nil, err
	}
	if dev.Descriptor.Product, err = dev.AddString("Coffer vault (CDC-ACM)"); err != nil {
		return nil, err
	}
	dev.Qualifier = &usb.DeviceQualifierDescriptor{}
	dev.Qualifier.SetDefaults()
	dev.Qualifier.NumConfigurations = 1

	conf := &usb.ConfigurationDescriptor{}
	conf.SetDefaults()

	// Control interface.
	ctl := &usb.InterfaceDescriptor{}
	ctl.SetDefaults()
	ctl.NumEndpoints = 1
	ctl.InterfaceClass = usb.COMMUNICATION_INTERFACE_CLASS
	ctl.InterfaceSubClass = usb.ACM_SUBCLASS
	ctl.InterfaceProtocol = usb.AT_COMMAND_PROTOCOL
	header := &usb.CDCHeaderDescriptor{}
	header.SetDefaults()
	callMgmt := &usb.CDCCallManagementDescriptor{}
	callMgmt.SetDefaults()
	callMgmt.DataInterface = 1
	acmDesc := &usb.CDCAbstractControlManagementDescriptor{}
	acmDesc.SetDefaults()
	acmDesc.Capabilities = 0 // no line coding, no break
	union := &usb.CDCUnionDescriptor{}
	union.SetDefaults()
	union.MasterInterface = 0
	union.SlaveInterface0 = 1
	ctl.ClassDescriptors = [][]byte{header.Bytes(), callMgmt.Bytes(), acmDesc.Bytes(), union.Bytes()}
	notify := &usb.EndpointDescriptor{}
	notify.SetDefaults()
	notify.EndpointAddress = 0x83 // EP3 IN
	notify.Attributes = 3         // interrupt
	notify.MaxPacketSize = 16
	notify.Interval = 9
	// No Function: the endpoint is declared, never serviced.
	ctl.Endpoints = []*usb.EndpointDescriptor{notify}
	conf.AddInterface(ctl)

	// Data interface.
	data := &usb.InterfaceDescriptor{}
	data.SetDefaults()
	data.NumEndpoints = 2
	data.InterfaceClass = usb.DATA_INTERFACE_CLASS
	in := &usb.EndpointDescriptor{}
	in.SetDefaults()
	in.EndpointAddress = 0x81 // EP1 IN
	in.Attributes = 2         // bulk
	in.MaxPacketSize = bulkPacket
	in.Zero = true
	in.Function = a.in
	out := &usb.EndpointDescriptor{}
	out.SetDefaults()
	out.EndpointAddress = 0x01 // EP1 OUT
	out.Attributes = 2
	out.MaxPacketSize = bulkPacket
	out.Function = a.out
	data.Endpoints = []*usb.EndpointDescriptor{in, out}
	conf.AddInterface(data)

	if err := dev.AddConfiguration(conf); err != nil {
		return nil, err
	}
	return dev, nil
}

func (a *acm) setup(s *usb.SetupData) (in []byte, ack bool, done bool, err error) {
	if (s.RequestType>>5)&3 != 1 { // not a class request
		return nil, false, false, nil
	}
	switch s.Request {
	case acmGetLineCoding:
		// 115200 baud, 1 stop bit, no parity, 8 data bits
		return []byte{0x00, 0xc2, 0x01, 0x00, 0, 0, 8}, false, true, nil
	case acmSetControlLineState, acmSendBreak:
		return nil, true, true, nil
	case acmSetLineCoding:
		return nil, false, true, errors.New("usb: line coding not supported")
	}
	return nil, false, true, errors.New("usb: unsupported class request")
}

// out receives a packet from the host; a full queue blocks the endpoint,
// which NAKs the host until the reader catches up.
func (a *acm) out(buf []byte, _ error) ([]byte, error) {
	if len(buf) > 0 {
		a.rx <- append([]byte(nil), buf...)
	}
	return nil, nil
}

// in hands the controller the next write, polling so that the endpoint loop
// can notice a reconfiguration.
func (a *acm) in(_ []byte, _ error) ([]byte, error) {
	select {
	case b := <-a.tx:
		return b, nil
	case <-time.After(10 * time.Millisecond):
		return nil, nil
	}
}

func (a *acm) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if len(a.pending) == 0 {
		a.pending = <-a.rx
	}
	n := copy(p, a.pending)
	a.pending = a.pending[n:]
	return n, nil
}

func (a *acm) Write(p []byte) (int, error) {
	for off := 0; off < len(p); off += 16 << 10 {
		a.tx <- append([]byte(nil), p[off:min(len(p), off+16<<10)]...)
	}
	return len(p), nil
}
