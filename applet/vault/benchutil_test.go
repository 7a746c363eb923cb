package vault

import (
	"strconv"
	"time"
)

func itoa(i int) string { return strconv.Itoa(i) }

var benchFlush = 2 * time.Millisecond
