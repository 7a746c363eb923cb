package main

// `coffer config show` and `coffer config set server|token|ca`.

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/cofferhsm/coffer/client"
)

// cmdConfigShow prints the settings of the configuration; the token, the
// one secret there, is said to be set, never shown.
func (c *cli) cmdConfigShow(ctx context.Context, args []string) error {
	fset := c.flags("config show")
	if err := parseNoArgs(fset, args); err != nil {
		return err
	}
	cfg, path, err := c.loadConfig()
	if err != nil {
		return err
	}
	c.printConfigHeader(cfg, path)
	if cfg.Realms == nil {
		c.printf("server:           %s\n", orNone(printable(cfg.Server)))
		c.printf("token:            %s\n", tokenText(cfg.Token))
		c.printf("provisioning key: %s\n", orNone(cfg.ProvisioningKey))
	}
	if cfg.Mode == client.ModePassword && cfg.Realms == nil {
		c.printf("user id:          %s\n", cfg.UserID)
		c.printf("attempt limit:    %d\n", cfg.Limit)
	}
	if cfg.CA != "" {
		c.printf("ca:               %s (trusted besides the system's roots)\n", client.QuoteName(cfg.CA))
	} else {
		c.printf("ca:               none (the system's roots)\n")
	}
	if cfg.Mode != client.ModePassword {
		c.printf("vault:            none (the user keeps the 64-digit key; `coffer init --password --from-key` moves it into a vault)\n")
		return nil
	}
	c.printf("insecure allowed: %v\n", cfg.AllowInsecure)
	c.printf("release log:      %s\n", logPinText(cfg.Log))
	if rc := cfg.Realms; rc != nil {
		c.printf("realm set:        any %d of %d realms, limit %d (each realm counts to %d)\n", rc.Threshold, len(rc.Set), rc.Limit, rc.PerRealm)
		for _, e := range rc.Set {
			c.printf("  %s: server %s, token %s, provisioning key %s, operator %q\n",
				client.QuoteName(e.Name), printable(e.Server), tokenText(e.Token), e.ProvisioningKey, e.Operator)
		}
	}
	return nil
}

func tokenText(token string) string {
	if token == "" {
		return "none"
	}
	return "set (not shown)"
}

// cmdConfigSet changes one setting, after checking it: a server or token
// with cofferd, a CA file by reading it. Nothing changes when a check
// fails.
func (c *cli) cmdConfigSet(ctx context.Context, args []string) error {
	fset := c.flags("config set")
	rest, err := parseValueAfter(fset, args, "token")
	if err != nil {
		return err
	}
	if len(rest) == 0 || len(rest) > 2 || (len(rest) == 1 && rest[0] != "token") {
		return usagef("config set takes a setting and its value")
	}
	cfg, path, err := c.loadConfig()
	if err != nil {
		return err
	}
	setting := rest[0]
	if cfg.Realms != nil && (setting == "server" || setting == "token") {
		return errors.New("a realm set keeps a server and a token per realm: change them with `coffer realms repair --realms FILE`")
	}
	switch setting {
	case "server":
		u, err := url.Parse(rest[1])
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return usagef("server %q is not an http(s) URL", rest[1])
		}
		c.warnPlainHTTP(rest[1])
		if cfg.Token != "" {
			if err := c.checkAccount(ctx, cfg, rest[1], cfg.Token); err != nil {
				return err
			}
		}
		cfg.Server = rest[1]
	case "token":
		token := ""
		if len(rest) == 2 {
			token = rest[1]
		} else if token = c.getenv("COFFER_TOKEN"); token == "" {
			if c.terminal == nil {
				return usagef("config set token needs the TOKEN (or COFFER_TOKEN)")
			}
			b, err := c.terminal("cofferd token: ")
			if err != nil {
				return err
			}
			token = strings.TrimSpace(string(b))
		}
		if token == "" {
			return usagef("empty token")
		}
		if cfg.Server == "" {
			return errors.New("no server to check the token with: `coffer config set server URL` first")
		}
		if err := c.checkAccount(ctx, cfg, cfg.Server, token); err != nil {
			return err
		}
		cfg.Token = token
	case "ca":
		if len(rest) != 2 {
			return usagef("config set ca needs FILE or none")
		}
		ca := ""
		if rest[1] != "none" {
			if ca, err = absCA(rest[1]); err != nil {
				return err
			}
		}
		cfg.CA = ca
	default:
		return usagef("no setting %q: server, token or ca", setting)
	}
	if err := cfg.Save(path); err != nil {
		return err
	}
	switch setting {
	case "server":
		c.printf("server: %s\n", printable(cfg.Server))
	case "token":
		c.printf("token: set (checked with cofferd)\n")
	case "ca":
		if cfg.CA == "" {
			c.printf("ca: none (the system's roots)\n")
		} else {
			c.printf("ca: %s\n", client.QuoteName(cfg.CA))
		}
	}
	return nil
}

// checkAccount asks the cofferd at server which account token names (GET
// /v1/account: authenticated, counts nothing) and, once the configuration
// knows its account (password mode), that it is that one: a token of
// another account would send this account's requests to a record that is
// not its own.
func (c *cli) checkAccount(ctx context.Context, cfg *client.Config, server, token string) error {
	conn, err := client.NewConn(server, token, c.httpClient)
	if err != nil {
		return err
	}
	acct, err := conn.Account(ctx)
	if err != nil {
		return fmt.Errorf("%w; nothing was changed", err)
	}
	if id := hex.EncodeToString(acct.UserID); cfg.UserID != "" && id != cfg.UserID {
		return fmt.Errorf("at %s this token is account %s, but this configuration's account is %s: it is another account's token; nothing was changed",
			printable(server), id, cfg.UserID)
	}
	return nil
}
