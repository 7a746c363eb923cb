package client

// NoticeKind says what a Notice is about.
type NoticeKind int

const (
	// NoticeUnverified: no release-log policy is pinned; the vault was
	// used unverified because insecure vaults are allowed.
	NoticeUnverified NoticeKind = iota + 1
	// NoticeUnlogged: the vault is not in the release log (or the log
	// could not be read, or is older than its policy's max-age) and was
	// used only because of AllowUnlogged.
	NoticeUnlogged
	// NoticeUpgraded: the vault's bundle changed, its keys did not, and
	// its new bundle and release are logged: the pin moved.
	NoticeUpgraded
	// NoticeStaleLog: the vault's host serves an older copy of the log
	// than this device has seen; the vault was checked against the
	// device's own view (it was found there before).
	NoticeStaleLog
)

// Notice is something the user must be told about a vault at this
// contact. Text is the sentence to show; the other fields are its data.
type Notice struct {
	Kind  NoticeKind
	Realm string // the realm's name, or "" for the single vault
	Vault string // the vault's name, as its bundle says
	// Logged is where the vault's bundle and release are in the log
	// (NoticeUpgraded).
	Logged   *LoggedInfo
	Firmware []byte
	Text     string
}

// IdentityChange is a bundle whose keys differ from the pinned ones, as
// Options.AcceptNewIdentity is shown it.
type IdentityChange struct {
	Vault                string // the new bundle's vault name
	Old, New             VaultKeys
	OldBundle, NewBundle string      // hex bundle hashes
	OldLogged, NewLogged *LoggedInfo // nil: not found in a log
	NewFirmware          []byte
	NewInsecure          bool
}

// VaultKeys are an identity's public keys, in hex.
type VaultKeys struct {
	Signing, AKE, HPKE string
}
