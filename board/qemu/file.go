package qemu

import "github.com/cofferhsm/coffer/internal/storage/emulate"

// File is a host file as the board reaches it: through semihosting on the
// device, an *os.File (emulate.OSFile) in tests. The store's device on it is
// emulate's FileDevice, whose Flush does nothing more than the writes here:
// semihosting has no fsync, so data reaches the host's page cache when a
// write returns. Killing QEMU loses nothing that was written; a host power
// cut may.
type File = emulate.File
