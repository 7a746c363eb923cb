//go:build !tamago

package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "the Coffer bootloader is built with GOOS=tamago GOARCH=arm (make firmware); see firmware/README-firmware.md")
	os.Exit(2)
}
