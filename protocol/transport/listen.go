package transport

import (
	"fmt"
	"net"
	"os"
	"strings"
)

// Listen accepts unix:PATH or tcp:HOST:PORT, where HOST must be a loopback
// address: the software vault is not meant to face a network.
func Listen(addr string) (net.Listener, error) {
	network, where, ok := strings.Cut(addr, ":")
	switch {
	case !ok:
	case network == "unix":
		os.Remove(where) // a socket left by an earlier run
		return net.Listen("unix", where)
	case network == "tcp":
		host, _, err := net.SplitHostPort(where)
		if err != nil {
			return nil, err
		}
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return nil, fmt.Errorf("listen: %s is not a loopback address", host)
		}
		return net.Listen("tcp", where)
	}
	return nil, fmt.Errorf("listen: want unix:PATH or tcp:127.0.0.1:PORT, got %q", addr)
}
