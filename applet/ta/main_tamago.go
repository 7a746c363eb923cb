//go:build tamago && arm

package main

import (
	"context"

	taruntime "github.com/cofferhsm/coffer/applet/runtime"
)

func main() {
	o := taruntime.TrustedOS()
	err := run(context.Background(), o)
	o.Log("applet stopped: " + err.Error())
	o.Exit(1)
}
