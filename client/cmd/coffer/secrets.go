package main

// Around the secrets the user types: answers to questions are echoed
// (they are no secret, and a typo in "delete" should be seen), a new
// password is weighed before a vault gets it, and a new 64-digit key is
// typed back in part to show it was written down.

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"

	"github.com/trustelem/zxcvbn"
	"golang.org/x/term"

	"github.com/cofferhsm/coffer/client"
)

// ttyAsker reads an answer, echoed as typed, from the terminal on stdin,
// or returns nil when stdin is not a terminal. It reads a byte at a time
// so that nothing after the line is taken from a later secret prompt.
func ttyAsker(stderr io.Writer) func(string) (string, error) {
	if !term.IsTerminal(int(os.Stdin.Fd())) {
		return nil
	}
	return func(prompt string) (string, error) {
		fmt.Fprint(stderr, prompt)
		var line []byte
		b := make([]byte, 1)
		for {
			n, err := os.Stdin.Read(b)
			if n == 1 && b[0] != '\n' {
				line = append(line, b[0])
			}
			if n == 1 && b[0] == '\n' {
				return strings.TrimSpace(string(line)), nil
			}
			if err != nil {
				if errors.Is(err, io.EOF) && len(line) > 0 {
					return strings.TrimSpace(string(line)), nil
				}
				return "", err
			}
		}
	}
}

// yes asks a y/N question on the terminal; no terminal is no.
func (c *cli) yes(prompt string) (bool, error) {
	if c.ask == nil {
		return false, nil
	}
	a, err := c.ask(prompt + " [y/N] ")
	if err != nil {
		return false, err
	}
	a = strings.ToLower(a)
	return a == "y" || a == "yes", nil
}

// strongScore is the least zxcvbn score (0 to 4) taken without a warning:
// 3 is "safely unguessable: moderate protection from offline slow-hash
// scenario".
const strongScore = 3

// weighPassword warns about a new password that the common guessing
// dictionaries and patterns find early (zxcvbn), and on a terminal asks
// whether to use it anyway: the vault lets only a few guesses through, but
// a common password may be among the first tried. A password not typed
// (a password file, COFFER_PASSWORD: scripts) gets the warning only.
func (c *cli) weighPassword(pw []byte, typed bool) error {
	// zxcvbn takes a string: this copy of the password cannot be wiped.
	r := zxcvbn.PasswordStrength(string(pw), []string{"coffer", "backup", "vault", "password"})
	if r.Score >= strongScore {
		return nil
	}
	c.warnf("warning: this password is weak (strength %d of 4): guessing tools try passwords like it early, and the vault's few tries may be enough. "+
		"Several random words make a strong one.\n", r.Score)
	if !typed || c.ask == nil {
		return nil
	}
	ok, err := c.yes("Use it anyway?")
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("weak password not used; nothing was changed")
	}
	return nil
}

// warnLimitOne says what --limit 1 means.
func (c *cli) warnLimitOne() {
	c.warnf("warning: --limit 1: a single wrong password, a typo included, erases the key for ever\n")
}

// warnKeyFlag says what --key costs: the key is in the process list.
func (c *cli) warnKeyFlag() {
	c.warnf("warning: --key puts the 64-digit key in the process list, where other users of this machine can read it; " +
		"prefer --key-file FILE or COFFER_KEY, or type it when asked\n")
}

// typeBackGroup asks, on a terminal, for one group of the key just shown,
// chosen at random, typed blind: proof that it was written down before the
// account relies on it. Without a terminal it says it did not ask.
func (c *cli) typeBackGroup(k *client.BackupKey) error {
	if c.terminal == nil {
		c.warnf("Not asking you to type back part of the key: no terminal. Make sure it is written down.\n")
		return nil
	}
	groups := k.KeyGroups()
	const tries = 3
	for i := 0; i < tries; i++ {
		n := rand.IntN(len(groups)-1) + 1 // 1..16: the key's own groups, not the check group
		typed, err := c.terminal(fmt.Sprintf("To check that you wrote it down, type group %d of the key (the %s group of four, left to right, line by line): ", n, ordinal(n)))
		if err != nil {
			return err
		}
		got := []byte(strings.ToUpper(strings.Join(strings.Fields(string(typed)), "")))
		clear(typed)
		ok := subtle.ConstantTimeCompare(got, []byte(groups[n-1])) == 1
		clear(got)
		if ok {
			return nil
		}
		c.warnf("That is not group %d.\n", n)
	}
	return errors.New("the key was not typed back")
}

func ordinal(n int) string {
	switch {
	case n%100 >= 11 && n%100 <= 13:
		return fmt.Sprintf("%dth", n)
	case n%10 == 1:
		return fmt.Sprintf("%dst", n)
	case n%10 == 2:
		return fmt.Sprintf("%dnd", n)
	case n%10 == 3:
		return fmt.Sprintf("%drd", n)
	}
	return fmt.Sprintf("%dth", n)
}
