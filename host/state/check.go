package state

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"time"
)

var (
	accountNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$`)
	deviceNameRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$`)
)

// FrontPrefix starts the name of every account of a user whom the
// messenger's backend names on cofferd's front listener (host/front.go):
// the user id ID is the account FrontPrefix+ID. Token accounts may not take
// such a name (cofferd account add, the accounts-file import refuse it), so
// that a fronted user and a token account are never the same account.
const FrontPrefix = "f."

// IsFrontName reports whether name is in the fronted users' namespace.
func IsFrontName(name string) bool { return strings.HasPrefix(name, FrontPrefix) }

// CheckFrontUser checks a user id the messenger's backend names: the rule
// of account names, 1 to 64 of A-Z a-z 0-9 . _ @ + -, starting with a
// letter or digit.
func CheckFrontUser(id string) error {
	if !accountNameRE.MatchString(id) {
		return fmt.Errorf("front user id: use 1 to 64 of A-Z a-z 0-9 . _ @ + -, starting with a letter or digit")
	}
	return nil
}

// CheckAccount checks what every store checks before it stores an account:
// a name of 1 to 64 of A-Z a-z 0-9 . _ @ + -, starting with a letter or
// digit, or FrontPrefix and a fronted user id (CheckFrontUser; 66 at most).
func CheckAccount(a Account) error {
	if !accountNameRE.MatchString(a.Name) && !(IsFrontName(a.Name) && CheckFrontUser(a.Name[len(FrontPrefix):]) == nil) {
		return fmt.Errorf("account name %q: use 1 to 64 of A-Z a-z 0-9 . _ @ + -, starting with a letter or digit", a.Name)
	}
	if len(a.UserID) < 1 || len(a.UserID) > 64 {
		return fmt.Errorf("account %q: user id of %d bytes, want 1 to 64", a.Name, len(a.UserID))
	}
	if a.Device != "" {
		return CheckDeviceName(a.Device)
	}
	return nil
}

// CheckDeviceName checks a device name: 1 to 32 of A-Z a-z 0-9 . _ -.
func CheckDeviceName(name string) error {
	if !deviceNameRE.MatchString(name) {
		return fmt.Errorf("device name %q: use 1 to 32 of A-Z a-z 0-9 . _ -, starting with a letter or digit", name)
	}
	return nil
}

// CheckHostName checks a host name, which follows the device names' rule.
func CheckHostName(name string) error {
	if !deviceNameRE.MatchString(name) {
		return fmt.Errorf("host name %q: use 1 to 32 of A-Z a-z 0-9 . _ -, starting with a letter or digit", name)
	}
	return nil
}

// CheckRegisterHost says whether h may replace old, the host's registry
// entry (nil: none yet). The same instance always may (its heartbeat). Another
// instance may not while old's heartbeat is younger than fresh (ErrExists:
// two processes under one name would share its device names), nor, when old
// is removed, with old's peer key (ErrHostRemoved: a removed host comes back
// only with a re-issued certificate, or, without a peer certificate, as a
// new process).
func CheckRegisterHost(old *Host, h Host, fresh time.Duration) error {
	if err := CheckHostName(h.Name); err != nil {
		return err
	}
	if len(h.PeerKey) != 0 && len(h.PeerKey) != 32 {
		return fmt.Errorf("host %q: peer key hash of %d bytes, want 32", h.Name, len(h.PeerKey))
	}
	if old == nil {
		return nil
	}
	if old.Removed {
		if h.Instance == old.Instance || (len(h.PeerKey) != 0 && bytes.Equal(h.PeerKey, old.PeerKey)) {
			return fmt.Errorf("%w: host %q was removed by the operator; it comes back only with a new peer certificate (cofferd peer cert) and a restart", ErrHostRemoved, h.Name)
		}
		return nil
	}
	if old.Instance != "" && old.Instance != h.Instance && !old.Seen.IsZero() && h.Seen.Sub(old.Seen) < fresh {
		return fmt.Errorf("%w: host %q is held by another running cofferd (instance %s, heartbeat %s ago): two processes under one -host would serve the same devices; stop it, or wait %s after it died",
			ErrExists, h.Name, old.Instance, h.Seen.Sub(old.Seen).Round(time.Second), fresh)
	}
	return nil
}

// CheckTransition says whether device d may go to state to: a retired
// device stays retired (its records are gone for this realm), and only a
// device with no account placed on it may be retired.
func CheckTransition(d Device, to DeviceState) error {
	switch to {
	case Active, Draining, Retired:
	default:
		return fmt.Errorf("%w: no device state %q", ErrDeviceState, to)
	}
	if d.State == Retired && to != Retired {
		return fmt.Errorf("%w: device %q is retired for good", ErrDeviceState, d.Name)
	}
	if to == Retired && d.Accounts > 0 {
		return fmt.Errorf("%w: device %q still holds %d accounts: move them first", ErrDeviceState, d.Name, d.Accounts)
	}
	return nil
}

// Refill is the token-bucket rule every store applies to a bucket: refill
// at rate per second up to burst since last, then spend one token or say
// how long until one is there. A clock that went back refills nothing.
func Refill(tokens *float64, last *time.Time, rate float64, burst int, now time.Time) (bool, time.Duration) {
	b := float64(max(burst, 1))
	if dt := now.Sub(*last).Seconds(); dt > 0 {
		*tokens = min(b, *tokens+dt*rate)
		*last = now
	}
	if *tokens >= 1 {
		*tokens--
		return true, 0
	}
	return false, time.Duration((1 - *tokens) / rate * float64(time.Second))
}
