package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/cofferhsm/coffer/client"
)

// ttyReader reads secrets from the controlling terminal without echo, or
// returns nil when stdin is not a terminal.
func ttyReader(stderr io.Writer) func(string) ([]byte, error) {
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return nil
	}
	return func(prompt string) ([]byte, error) {
		defer echoOff(fd)()
		fmt.Fprint(stderr, prompt)
		b, err := term.ReadPassword(fd)
		fmt.Fprintln(stderr)
		return b, err
	}
}

func stderrIsTerminal() bool { return term.IsTerminal(int(os.Stderr.Fd())) }

// readSecretFile reads a password or key file, without its final line
// break.
func readSecretFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	return bytes.TrimSuffix(b, []byte("\r")), nil
}

// secret gets a password: from file (a flag), then the environment
// variable env, then the terminal (twice if confirm). A new password
// (confirm) is weighed too.
func (c *cli) secret(file, env, prompt string, confirm bool) ([]byte, error) {
	pw, err := c.readSecret(file, env, prompt, confirm)
	if err != nil || !confirm {
		return pw, err
	}
	typed := file == "" && c.getenv(env) == ""
	if err := c.weighPassword(pw, typed); err != nil {
		clear(pw)
		return nil, err
	}
	return pw, nil
}

func (c *cli) readSecret(file, env, prompt string, confirm bool) ([]byte, error) {
	if file != "" {
		b, err := readSecretFile(file)
		if err != nil {
			return nil, fmt.Errorf("password file: %w", err)
		}
		return b, nil
	}
	if v := c.getenv(env); v != "" {
		return []byte(v), nil
	}
	if c.terminal == nil {
		return nil, fmt.Errorf("no terminal to ask for the password: give it with a password file or %s", env)
	}
	pw, err := c.terminal(prompt + ": ")
	if err != nil {
		return nil, err
	}
	if len(pw) == 0 {
		return nil, client.ErrEmptyPassword
	}
	for confirm {
		again, err := c.terminal(prompt + " again: ")
		if err != nil {
			clear(pw)
			return nil, err
		}
		same := subtle.ConstantTimeCompare(pw, again) == 1
		clear(again)
		if same {
			break
		}
		// A typo in one of the two: nothing was sent, so ask for both again.
		clear(pw)
		c.warnf("The two passwords differ; type them again (an empty password stops).\n")
		if pw, err = c.terminal(prompt + ": "); err != nil {
			return nil, err
		}
		if len(pw) == 0 {
			return nil, client.ErrEmptyPassword
		}
	}
	return pw, nil
}

// keyFlags are the ways to give a 64-digit key.
type keyFlags struct {
	text, file string
}

func (k *keyFlags) given(c *cli) bool {
	return k.text != "" || k.file != "" || c.getenv("COFFER_KEY") != ""
}

// backupKey reads a 64-digit key from the flags, COFFER_KEY or the terminal.
func (c *cli) typedKey(k keyFlags) (*client.BackupKey, error) {
	var text []byte
	switch {
	case k.text != "":
		c.warnKeyFlag()
		text = []byte(k.text)
	case k.file != "":
		b, err := readSecretFile(k.file)
		if err != nil {
			return nil, fmt.Errorf("key file: %w", err)
		}
		text = b
	case c.getenv("COFFER_KEY") != "":
		text = []byte(c.getenv("COFFER_KEY"))
	case c.terminal == nil:
		return nil, errors.New("no terminal to ask for the 64-digit key: give it with --key, --key-file or COFFER_KEY")
	default:
		b, err := c.terminal(fmt.Sprintf("Your %d-digit key (%d digits with its check group; spaces and dashes do not matter): ",
			client.KeyDigits, client.TextDigits))
		if err != nil {
			return nil, err
		}
		text = b
	}
	defer clear(text)
	return client.ParseKeyText(string(text))
}

// confirmWord asks the user to type word to go on, unless yes (the
// command's --yes). Without a terminal it refuses with noTerminal; an
// answer other than word is refused with refused.
func (c *cli) confirmWord(yes bool, word, noTerminal, refused string) error {
	if yes {
		return nil
	}
	if c.ask == nil {
		return errors.New(noTerminal)
	}
	answer, err := c.ask("Type " + word + " to go on: ")
	if err != nil {
		return err
	}
	if strings.TrimSpace(string(answer)) != word {
		return errors.New(refused)
	}
	return nil
}

// triesCount is a fresh count of the tries left, from what the vault (or
// the realms) signed, before a password is sent.
type triesCount struct {
	known bool   // it verified; otherwise nothing below is set
	left  uint   // tries left (across the realms, for a realm set)
	what  string // for the prompt: "3 of 10 tries left"
	// attempts is the signed attempts total (single vault), to check that
	// an answer promising nothing was counted did not lie.
	attempts      uint64
	attemptsKnown bool
}

// stopError ends the password loop at once: the count showed there is
// nothing to try (the key is gone), or that the vault's store went back.
type stopError struct{ error }

func (e stopError) Unwrap() error { return e.error }

// passwordTarget is what the password loop sends passwords to.
type passwordTarget struct {
	prompt string
	// count fetches a fresh signed count of the tries left. A stopError
	// ends the loop; any other error means the count is unknown.
	count func(ctx context.Context) (*triesCount, error)
	// try sends one password.
	try func(ctx context.Context, pw []byte) error
	// refused: the error says the password was checked and is wrong, and
	// tries are left: ask for another.
	refused func(err error) bool
	// notCounted: the error promises that nothing was counted; how long to
	// wait before sending the same password again (0: never).
	notCounted func(err error) time.Duration
}

// Bounds on sending a password again on its own.
const (
	maxAutoRetries = 5
	maxAutoWait    = 2 * time.Minute
)

// withPassword gets a password and sends it to t. A script (the password
// in a file or the environment, or no terminal) gets one try, as before.
// On a terminal it asks again after a wrong password, showing the tries
// left, until one is right, the user gives up (an empty password) or no
// tries are left; before every password it fetches a fresh signed count,
// and before the last try it asks for "last try" to be typed. A password
// this run saw refused is never sent again (it keeps a keyed hash of each,
// compared in constant time, and wipes them at the end). It sends the same
// password again on its own only after an answer that promises nothing was
// counted, and only when a signed count from before and after shows the
// attempts total did not move.
func (c *cli) withPassword(ctx context.Context, file, env string, t passwordTarget) error {
	if file != "" || c.getenv(env) != "" || c.terminal == nil {
		pw, err := c.secret(file, env, t.prompt, false)
		if err != nil {
			return err
		}
		defer clear(pw)
		return t.try(ctx, pw)
	}
	refused, err := newRefusedSet()
	if err != nil {
		return err
	}
	defer refused.wipe()
	var pw []byte
	defer func() { clear(pw) }()
	var count *triesCount
	retries := 0
	for {
		if count == nil {
			if count, err = t.count(ctx); err != nil {
				var stop stopError
				if errors.As(err, &stop) {
					return stop.error
				}
				c.warnf("The vault's signed count of tries left could not be checked: %s\n", printable(strings.TrimPrefix(err.Error(), "client: ")))
				count = &triesCount{}
			}
		}
		if pw == nil {
			prompt := t.prompt
			if count.known {
				prompt += " (" + count.what + ")"
			}
			if pw, err = c.terminal(prompt + ": "); err != nil {
				return err
			}
			if len(pw) == 0 {
				return errors.New("no password given; stopped")
			}
			if refused.has(pw) {
				clear(pw)
				pw = nil
				c.warnf("That password was already tried in this run and refused; it was not sent again.\n")
				continue
			}
			if !count.known || count.left == 1 {
				if err := c.confirmLastTry(count.known); err != nil {
					return err
				}
			}
		}
		before := count
		count = nil // something is sent: the count is stale
		err := t.try(ctx, pw)
		if err == nil {
			return nil
		}
		if t.refused(err) {
			refused.add(pw)
			clear(pw)
			pw, retries = nil, 0
			c.warnf("%s\n", printable(strings.TrimPrefix(err.Error(), "client: ")))
			continue
		}
		wait := t.notCounted(err)
		if wait <= 0 || wait > maxAutoWait || retries >= maxAutoRetries || !before.attemptsKnown {
			return err
		}
		retries++
		c.warnf("%s\nNothing was counted, the answer says: the same password is sent again in %s, once the vault's signed count confirms it.\n",
			printable(strings.TrimPrefix(err.Error(), "client: ")), wait.Round(time.Second))
		if err := sleepCtx(ctx, wait); err != nil {
			return err
		}
		after, cerr := t.count(ctx)
		var stop stopError
		if errors.As(cerr, &stop) {
			return stop.error
		}
		if cerr != nil || !after.known || !after.attemptsKnown || after.attempts != before.attempts {
			why := "could not be checked"
			if cerr == nil && after.attemptsKnown {
				why = fmt.Sprintf("shows %d attempts where there were %d", after.attempts, before.attempts)
			}
			return fmt.Errorf("%w; the answer said nothing was counted, but the vault's signed count %s: not sent again", err, why)
		}
		count = after
	}
}

// confirmLastTry asks for "last try" to be typed before the last try, or
// before a try whose count could not be checked.
func (c *cli) confirmLastTry(known bool) error {
	if known {
		c.warnf("This is your last try; after it, if the password is wrong, K is erased for ever.\n")
	} else {
		c.warnf("This may be your last try: after the last one, if the password is wrong, K is erased for ever.\n")
	}
	if c.ask == nil {
		return errors.New("not confirmed (no terminal to ask); the password was not sent")
	}
	answer, err := c.ask("Type 'last try' to go on: ") // echoed: a confirmation, not a secret
	if err != nil {
		return err
	}
	if strings.TrimSpace(answer) != "last try" {
		return errors.New("not confirmed; the password was not sent")
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// refusedSet remembers the passwords refused in this run as HMAC-SHA256
// under a key of its own, drawn for the run: never the passwords, and no
// hash that outlives the run or can be tried offline without that key.
type refusedSet struct {
	key    []byte
	hashes [][]byte
}

func newRefusedSet() (*refusedSet, error) {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return nil, err
	}
	return &refusedSet{key: k}, nil
}

// sum is the keyed hash of the password as OPAQUE gets it (NFC), so that
// the same password typed in another normalization is the same.
func (r *refusedSet) sum(pw []byte) []byte {
	n, err := client.NormalizePassword(pw)
	if err != nil {
		return nil
	}
	defer clear(n)
	m := hmac.New(sha256.New, r.key)
	m.Write(n)
	return m.Sum(nil)
}

func (r *refusedSet) add(pw []byte) {
	if s := r.sum(pw); s != nil {
		r.hashes = append(r.hashes, s)
	}
}

// has compares with every hash, in constant time each and without
// stopping at a match.
func (r *refusedSet) has(pw []byte) bool {
	s := r.sum(pw)
	if s == nil {
		return false
	}
	defer clear(s)
	found := 0
	for _, h := range r.hashes {
		found |= subtle.ConstantTimeCompare(h, s)
	}
	return found == 1
}

func (r *refusedSet) wipe() {
	clear(r.key)
	for _, h := range r.hashes {
		clear(h)
	}
	r.hashes = nil
}

// vaultTarget sends passwords to a single vault's login. Its count is the
// vault's user status (status: the client's UserStatus, or, in a rollback
// recovery, its RollbackUserStatus): a rollback or a contradiction of the
// last receipt stops, as does a locked account.
func (c *cli) vaultTarget(status func(context.Context) (*client.UserStatus, error), cfg *client.Config, path, prompt string, login func(ctx context.Context, pw []byte) error) passwordTarget {
	return passwordTarget{
		prompt: prompt,
		count: func(ctx context.Context) (*triesCount, error) {
			st, err := status(ctx)
			if path != "" {
				c.save(cfg, path)
			}
			var rb *client.RollbackError
			if errors.As(err, &rb) || errors.Is(err, client.ErrStatusContradicts) {
				return nil, stopError{err}
			}
			if err != nil {
				return nil, err
			}
			if st.TriesLeft == 0 {
				return nil, stopError{lockedStatusError(st)}
			}
			n := &triesCount{known: true, left: st.TriesLeft, attempts: uint64(st.AttemptsTotal), attemptsKnown: true,
				what: fmt.Sprintf("%d of %d tries left", st.TriesLeft, st.Limit)}
			if st.OtherRegistration {
				n.what += ", of a key this device does not know"
			}
			return n, nil
		},
		try: login,
		refused: func(err error) bool {
			var le *client.LoginError
			return errors.As(err, &le) && le.Refused() && le.Receipt.TriesLeft > 0
		},
		notCounted: func(err error) time.Duration {
			var nc *client.NotCountedError
			if errors.As(err, &nc) {
				return nc.RetryAfter
			}
			return 0
		},
	}
}

// lockedStatusError says what a signed count of no tries left means.
func lockedStatusError(st *client.UserStatus) error {
	if st.OtherRegistration {
		return fmt.Errorf("the vault no longer holds this account's key as this device knows it: it holds a locked "+
			"registration %x with no tries left; nothing was sent", st.Generation)
	}
	if st.RevivableMillis > 0 {
		return fmt.Errorf("this account is locked for now: no tries are left, and the login that made the last one can still "+
			"restore the key within %s if it has the right password; run the command again then. Nothing was sent",
			(time.Duration(st.RevivableMillis) * time.Millisecond).Round(time.Second))
	}
	return fmt.Errorf("this account is locked: after %s the vault erased the key for ever. No password can get it back; "+
		"backups can be opened only with an age identity exported earlier (coffer key export-age). Nothing was sent",
		client.Plural(st.FailedSinceSuccess, "failed attempt"))
}

// realmTarget sends passwords to a realm set. Its count is a probe of every
// realm (which counts nothing): a set that cannot be recovered, or has no
// tries left across the realms, stops. It never sends a password again on
// its own: a try evaluates at several realms, and no one answer promises
// that none of them counted.
func (c *cli) realmTarget(rs *client.RealmSet, cfg *client.Config, path, prompt string, try func(ctx context.Context, pw []byte) error) passwordTarget {
	return passwordTarget{
		prompt: prompt,
		count: func(ctx context.Context) (*triesCount, error) {
			st, err := rs.Probe(ctx)
			if path != "" {
				c.save(cfg, path)
			}
			if err != nil {
				return nil, err
			}
			if !st.Recoverable {
				return nil, stopError{fmt.Errorf("the realm set cannot recover your key now: %w", st.VersionErr)}
			}
			if st.TriesLeft == 0 {
				return nil, stopError{errors.New("no tries left across the realms: fewer than the threshold can still evaluate a password, so the key cannot be recovered; nothing was sent")}
			}
			return &triesCount{known: true, left: st.TriesLeft, what: tries(st.TriesLeft) + " left across the realms"}, nil
		},
		try: try,
		refused: func(err error) bool {
			var we *client.WrongPasswordError
			return errors.As(err, &we) && we.TriesLeft > 0
		},
		notCounted: func(error) time.Duration { return 0 },
	}
}

func tries(n uint) string {
	if n == 1 {
		return "1 try"
	}
	return fmt.Sprintf("%d tries", n)
}
