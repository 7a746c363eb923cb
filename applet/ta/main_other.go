//go:build !tamago

package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "the Coffer Trusted Applet runs only under the Trusted OS (GOOS=tamago GOARCH=arm); see firmware/README-firmware.md")
	os.Exit(2)
}
