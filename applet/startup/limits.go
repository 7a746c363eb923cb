package startup

import (
	"github.com/cofferhsm/coffer/applet/store"
	"github.com/cofferhsm/coffer/applet/vault"
)

// The vault and the record store meet here, and only here, so this is where
// their one shared number is tied. The store's record slot is fixed by its
// on-disk format (applet/store/FORMAT.md, the authority), and the vault
// refuses to encode a record larger than its own bound, so that an
// oversized record is an error of the vault's, at encoding time, rather
// than a refused commit. Neither package imports the other (the store is a
// B+tree that knows nothing of OPAQUE), so the bound cannot be one
// constant; instead the build fails unless the two are equal: each
// expression below is a negative constant, which does not convert to uint,
// when one bound exceeds the other.
const (
	_ = uint(store.MaxRecordSize - vault.MaxRecordSize)
	_ = uint(vault.MaxRecordSize - store.MaxRecordSize)
)
