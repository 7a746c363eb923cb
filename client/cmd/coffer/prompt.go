package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

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
	if confirm {
		again, err := c.terminal(prompt + " again: ")
		if err != nil {
			return nil, err
		}
		defer clear(again)
		if !bytes.Equal(pw, again) {
			clear(pw)
			return nil, errors.New("the two passwords differ")
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
