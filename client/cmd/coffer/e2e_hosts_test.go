package main

// End to end with one realm spread over several devices and hosts (issue
// 13): cofferd processes sharing one state database (PostgreSQL for three
// hosts, SQLite for one), each with two software vaults signed by one
// provisioning key and, with several hosts, a peer listener with
// certificates from the realm's peer CA; coffer driven as a user drives it,
// through any host.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/host/state/pgtest"
)

// realmHost is one cofferd of the realm and its two vaults.
type realmHost struct {
	name    string
	devices []string
	proc    *proc
	addr    string
}

func (h *realmHost) url() string { return "http://" + h.addr }

// hostsRealm is a realm of cofferd processes sharing the state database db.
type hostsRealm struct {
	t       *testing.T
	db      string
	provKey string // hex: what clients pin
	hosts   []*realmHost
	tokens  map[string]string
}

// newHostsRealm starts the named hosts on the state database db (migrated
// here, once), each with two signed software vaults NAME-a and NAME-b, and
// with more than one host a peer listener each; it returns once every
// host sees every device healthy and, with several hosts, every peer
// reachable.
func newHostsRealm(t *testing.T, db string, names ...string) *hostsRealm {
	t.Helper()
	dir := t.TempDir()
	cofferd := e2eBin(t, "cofferd")
	keyFile := filepath.Join(dir, "provisioning.key")
	r := &hostsRealm{t: t, db: db, provKey: newProvisioningKey(t, keyFile), tokens: map[string]string{}}
	runTool(t, cofferd, "migrate", "-db", db)
	peers := len(names) > 1
	if peers {
		runTool(t, cofferd, "peer", "ca", "-out", filepath.Join(dir, "ca"))
	}
	for _, name := range names {
		hdir := filepath.Join(dir, name)
		if err := os.MkdirAll(hdir, 0o700); err != nil {
			t.Fatal(err)
		}
		h := &realmHost{name: name}
		var specs []string
		for _, suffix := range []string{"a", "b"} {
			dev := name + "-" + suffix
			v := newSignedVault(t, filepath.Join(hdir, suffix), keyFile)
			v.serve()
			h.devices = append(h.devices, dev)
			specs = append(specs, dev+"="+"unix:"+v.sock)
		}
		args := []string{"-listen", "127.0.0.1:0", "-db", db, "-host", name, "-vault", strings.Join(specs, ","),
			"-login-rate", "0", "-log-level", "debug", "-allow-insecure-vault", "-poll", "300ms",
			"-realms", filepath.Join(hdir, "realms"), "-rollbacks", filepath.Join(hdir, "rollbacks.json")}
		if peers {
			runTool(t, cofferd, "peer", "cert", "-ca", filepath.Join(dir, "ca"), "-host", name, "-out", filepath.Join(hdir, "peer"))
			p := filepath.Join(hdir, "peer")
			args = append(args, "-peer-listen", "127.0.0.1:0", "-peer-cert", filepath.Join(p, name+".crt"),
				"-peer-key", filepath.Join(p, name+".key"), "-peer-ca", filepath.Join(p, "ca.crt"))
		}
		h.proc = startProcIn(t, "cofferd "+name, hdir, cofferd, args...)
		h.addr = h.proc.waitFor(reListening, 30*time.Second)[1]
		r.hosts = append(r.hosts, h)
	}
	var all []string
	for _, h := range r.hosts {
		all = append(all, h.devices...)
	}
	for _, h := range r.hosts {
		r.waitHealth(h, all, names)
	}
	return r
}

// realmHealth is what the tests read of cofferd's /healthz.
type realmHealth struct {
	Realm map[string]struct {
		Host    string `json:"host"`
		Healthy bool   `json:"healthy"`
	} `json:"realm"`
	Peers map[string]struct {
		Reachable bool `json:"reachable"`
	} `json:"peers"`
}

// waitHealth waits until h reports every one of devices healthy and every
// other one of hosts reachable.
func (r *hostsRealm) waitHealth(h *realmHost, devices, hosts []string) {
	r.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var hl realmHealth
		missing := ""
		resp, err := http.Get(h.url() + "/healthz")
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&hl)
			resp.Body.Close()
		}
		if err != nil {
			missing = err.Error()
		}
		for _, d := range devices {
			if missing == "" && !hl.Realm[d].Healthy {
				missing = "device " + d
			}
		}
		for _, p := range hosts {
			if missing == "" && p != h.name && !hl.Peers[p].Reachable {
				missing = "peer " + p
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%s: %s not healthy after 30s", h.name, missing)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cofferd runs a one-shot cofferd command on the realm's database.
func (r *hostsRealm) cofferd(args ...string) string {
	r.t.Helper()
	return runTool(r.t, e2eBin(r.t, "cofferd"), append(args, "-db", r.db)...)
}

// addAccounts adds accounts, placed at their first request.
func (r *hostsRealm) addAccounts(names ...string) {
	r.t.Helper()
	for _, n := range names {
		m := reTokenLine.FindStringSubmatch(r.cofferd("account", "add", n))
		if m == nil {
			r.t.Fatalf("cofferd account add %s printed no token", n)
		}
		r.tokens[n] = m[1]
	}
}

// devices is `cofferd device list -json`, by name.
func (r *hostsRealm) devices() map[string]struct {
	Host, State string
	Accounts    uint64
} {
	r.t.Helper()
	var list []struct {
		Name, Host, State string
		Accounts          uint64
	}
	out := r.cofferd("device", "list", "-json")
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		r.t.Fatalf("device list -json: %v\n%s", err, out)
	}
	m := map[string]struct {
		Host, State string
		Accounts    uint64
	}{}
	for _, d := range list {
		m[d.Name] = struct {
			Host, State string
			Accounts    uint64
		}{d.Host, d.State, d.Accounts}
	}
	return m
}

var reAccountLine = regexp.MustCompile(`(?m)^(\S+)\s+[0-9a-f]{32}\s+(\S+)\s`)

// placement is `cofferd account list`: each account's device ("-": none).
func (r *hostsRealm) placement() map[string]string {
	r.t.Helper()
	m := map[string]string{}
	for _, x := range reAccountLine.FindAllStringSubmatch(r.cofferd("account", "list"), -1) {
		m[x[1]] = x[2]
	}
	return m
}

// hostOf is the host holding device.
func (r *hostsRealm) hostOf(device string) *realmHost {
	for _, h := range r.hosts {
		for _, d := range h.devices {
			if d == device {
				return h
			}
		}
	}
	r.t.Fatalf("no host holds device %q", device)
	return nil
}

// realmUser is a user of the realm with one backup of a tree of theirs.
type realmUser struct {
	name   string
	u      *user
	src    string
	backup string
}

// on returns the user's coffer for test t (its own goroutine).
func (ru *realmUser) on(t *testing.T) *user {
	u := *ru.u
	u.t = t
	return &u
}

// initAt initialises a user through host h: the account's first request,
// which places it.
func (r *hostsRealm) initAt(name string, h *realmHost) *realmUser {
	r.t.Helper()
	u := newUser(r.t)
	u.env["COFFER_PASSWORD"] = "correct horse battery staple " + name
	u.initPassword(h.url(), r.tokens[name], r.provKey, "--insecure", "--limit", "3")
	return &realmUser{name: name, u: u}
}

// restoreVia points the user's configuration at host h (coffer config set
// server, which checks the account there) and restores their backup
// through it: the same tree.
func (ru *realmUser) restoreVia(t *testing.T, h *realmHost) {
	t.Helper()
	u := ru.on(t)
	u.ok("config", "set", "server", h.url())
	out := filepath.Join(t.TempDir(), "out")
	u.ok("restore", ru.backup, "-C", out)
	sameTree(t, ru.src, filepath.Join(out, "documents"))
}

// backups gives each user a tree of their own and the path of its backup
// (in the test's folders, which outlive the subtests).
func backups(t *testing.T, users []*realmUser) {
	for _, ru := range users {
		ru.src = sourceTree(t)
		ru.backup = filepath.Join(t.TempDir(), "docs.age")
	}
}

// parallel runs f for each user (subtests PHASE-NAME), two at a time (the machine's cores: each
// login is a real Argon2id), each as a subtest of its own.
func parallel(t *testing.T, phase string, users []*realmUser, f func(t *testing.T, i int, ru *realmUser)) {
	t.Helper()
	sem := make(chan struct{}, 2)
	var wg sync.WaitGroup
	for i, ru := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			t.Run(phase+"-"+ru.name, func(t *testing.T) { f(t, i, ru) })
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
}

// drainAndRetire drains device, checks that a new user initialised through
// host via is placed elsewhere, that retiring the device is refused while
// an account is on it, unplaces its accounts and retires it. It returns the
// accounts it unplaced.
func (r *hostsRealm) drainAndRetire(t *testing.T, device string, via *realmHost, newUser string) []string {
	t.Helper()
	// Drained, it must be the device a new user would be placed on
	// otherwise (all of equal capacity: the fewest accounts, then the
	// first name), or the check below would hold without the drain.
	devs := r.devices()
	for name, d := range devs {
		if d.State == "active" && (d.Accounts < devs[device].Accounts || d.Accounts == devs[device].Accounts && name < device) {
			t.Fatalf("a new user would go to %s, not %s, drained or not: %+v", name, device, devs)
		}
	}
	r.cofferd("device", "drain", device)
	if got := r.devices()[device].State; got != "draining" {
		t.Fatalf("%s is %q after drain", device, got)
	}
	r.addAccounts(newUser)
	r.initAt(newUser, via)
	if got := r.placement()[newUser]; got == device || got == "-" {
		t.Fatalf("a new user was placed on %q after %s was drained", got, device)
	}
	cmd := e2eBin(t, "cofferd")
	var on []string
	for a, d := range r.placement() {
		if d == device {
			on = append(on, a)
		}
	}
	if len(on) == 0 {
		t.Fatalf("no account on %s to move", device)
	}
	out, err := runToolErr(t, cmd, "device", "retire", device, "-db", r.db)
	if err == nil || !strings.Contains(out, "cofferd device evacuate "+device) {
		t.Fatalf("device retire with %d accounts on %s: %v\n%s", len(on), device, err, out)
	}
	t.Logf("device retire %s with accounts on it, refused:\n%s", device, out)
	// One account moved by itself, the rest by evacuating the device.
	r.cofferd("account", "unplace", on[0])
	if out := r.cofferd("device", "evacuate", device); !strings.Contains(out, fmt.Sprintf("%s: accounts taken off: %d.", device, len(on)-1)) {
		t.Fatalf("device evacuate %s with %d accounts left on it:\n%s", device, len(on)-1, out)
	}
	out = r.cofferd("device", "retire", device)
	if got := r.devices()[device]; got.State != "retired" || got.Accounts != 0 {
		t.Fatalf("after retire: %+v\n%s", got, out)
	}
	return on
}

// runToolErr runs a one-shot command expected to fail.
func runToolErr(t *testing.T, bin string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = e2eEnviron(t, nil)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestE2EHostsPostgres: three cofferd processes sharing one PostgreSQL,
// each with two software vaults and a peer listener. Twelve users
// initialised through the three hosts in turn are placed across all six
// devices; each backs up and restores through a host other than the one it
// registered at. A device drained takes no new user, and is retired once
// its accounts are moved (refused before). Then one host is killed: the
// users of its devices get a clear 503 naming the unreachable host, through
// either remaining host; everyone else restores through them.
func TestE2EHostsPostgres(t *testing.T) {
	e2eBinaries(t)
	r := newHostsRealm(t, pgtest.DSN(t), "h1", "h2", "h3")
	const n = 12
	var users []*realmUser
	for i := range n {
		name := fmt.Sprintf("user%02d", i)
		r.addAccounts(name)
		// One at a time: each init's first request places its account
		// on the device with the most room then.
		users = append(users, r.initAt(name, r.hosts[i%3]))
	}
	devs := r.devices()
	placed := r.placement()
	for _, h := range r.hosts {
		for _, d := range h.devices {
			if devs[d].Host != h.name || devs[d].State != "active" || devs[d].Accounts == 0 {
				t.Errorf("device %s: %+v, want on %s, active, holding at least one account", d, devs[d], h.name)
			}
		}
	}
	t.Logf("placement after %d users: %v", n, devs)
	if t.Failed() {
		t.FailNow()
	}

	// Back up, then restore through the next host, forwarded (or not)
	// to the host of the user's device.
	backups(t, users)
	parallel(t, "restore", users, func(t *testing.T, i int, ru *realmUser) {
		ru.on(t).ok("backup", ru.src, "-o", ru.backup)
		ru.restoreVia(t, r.hosts[(i+1)%3])
	})

	// h1-a drained: a new user through h2 goes elsewhere; retired once
	// its accounts are off it.
	moved := r.drainAndRetire(t, "h1-a", r.hosts[1], "late")
	t.Logf("moved off h1-a: %v", moved)

	// h3 killed, each user's configuration pointing at h1 or h2 first.
	dead := r.hosts[2]
	placed = r.placement()
	var live, stranded []*realmUser
	for _, ru := range users {
		switch dev := placed[ru.name]; {
		case dev == "-":
			// Moved off h1-a: placed again at their next request.
		case r.hostOf(dev) == dead:
			stranded = append(stranded, ru)
		default:
			live = append(live, ru)
		}
	}
	if len(stranded) == 0 || len(live) == 0 {
		t.Fatalf("placement %v leaves no user on the dead host, or none elsewhere", placed)
	}
	rest := append(append([]*realmUser{}, live...), stranded...)
	for i, ru := range rest {
		ru.on(t).ok("config", "set", "server", r.hosts[i%2].url())
	}
	dead.proc.kill()
	parallel(t, "h3-down", rest, func(t *testing.T, i int, ru *realmUser) {
		via := r.hosts[i%2]
		if r.hostOf(placed[ru.name]) != dead {
			ru.restoreVia(t, via)
			return
		}
		want := []string{"503", "unavailable", "try again in 5s", "host holding this account's vault device (h3, device " + placed[ru.name] + ") is unreachable"}
		res := ru.on(t).fails(want, "restore", ru.backup, "-C", filepath.Join(t.TempDir(), "out"))
		if i == len(live) {
			t.Logf("what a user of the dead host sees restoring through %s:\n%s", via.name, res.stderr)
		}
		// Nor can they move to the other live host: it checks the
		// account there, which is forwarded to h3 too.
		ru.on(t).fails(append(want, "nothing was changed"), "config", "set", "server", r.hosts[(i+1)%2].url())
	})
	// The remaining hosts name the dead one in their health.
	for _, h := range r.hosts[:2] {
		resp, err := http.Get(h.url() + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		var hl realmHealth
		json.NewDecoder(resp.Body).Decode(&hl)
		resp.Body.Close()
		if hl.Peers["h3"].Reachable {
			t.Errorf("%s reports h3 reachable after it was killed", h.name)
		}
	}
}

// TestE2EHostsSQLite: the same realm on one host with its SQLite file and
// two vaults: users placed across both, restore, drain, retire.
func TestE2EHostsSQLite(t *testing.T) {
	e2eBinaries(t)
	r := newHostsRealm(t, "sqlite:"+filepath.Join(t.TempDir(), "cofferd.db"), "h1")
	var users []*realmUser
	for i := range 4 {
		name := fmt.Sprintf("user%02d", i)
		r.addAccounts(name)
		users = append(users, r.initAt(name, r.hosts[0]))
	}
	devs := r.devices()
	if len(devs) != 2 || devs["h1-a"].Accounts != 2 || devs["h1-b"].Accounts != 2 {
		t.Fatalf("placement of 4 users over 2 devices: %+v", devs)
	}
	backups(t, users)
	parallel(t, "restore", users, func(t *testing.T, i int, ru *realmUser) {
		ru.on(t).ok("backup", ru.src, "-o", ru.backup)
		ru.restoreVia(t, r.hosts[0])
	})
	moved := r.drainAndRetire(t, "h1-a", r.hosts[0], "late")
	if len(moved) != 2 {
		t.Fatalf("moved %v off h1-a, want its 2 accounts", moved)
	}
	if got := r.placement()["late"]; got != "h1-b" {
		t.Fatalf("the new user is on %q, want h1-b", got)
	}
}
