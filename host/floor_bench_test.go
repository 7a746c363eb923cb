package host

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/applet/softvault/softvaulttest"
	"github.com/cofferhsm/coffer/internal/testbin"
	"github.com/cofferhsm/coffer/protocol"
)

// BenchmarkRelayFloor measures what the least an intermediary can be adds
// to a login, in the setting of BenchmarkLoginLatency's vault=unix (client,
// intermediary and a software vault on a unix socket, all in this process,
// the same clients, rounds and metrics): no HTTP, no parsing, no
// authentication.
//
//   - relay=copy: a goroutine pair per connection copies bytes between a
//     client-side unix socket and a connection of its own to the vault's
//     socket; the clients share one stream client on the relay's socket,
//     as the direct path's share one on the vault's.
//   - relay=frames: the relay's socket is served by protocol.ServeStream
//     (64 in flight), whose handler forwards each request frame through a
//     stream client on the vault's socket: a goroutine per request and
//     frames matched by id, as cofferd's StreamDevice does, without HTTP.
//
// If even these add more than 10 %, no relay in this process does better.
//
//	go test ./host -run '^$' -bench 'RelayFloor' -benchtime 300x
func BenchmarkRelayFloor(b *testing.B) {
	for _, relay := range []string{"copy", "frames"} {
		for _, clients := range []int{1, 4, 16, 200} {
			b.Run(fmt.Sprintf("relay=%s/clients=%d", relay, clients), func(b *testing.B) { benchRelayFloor(b, relay, clients) })
		}
	}
}

func benchRelayFloor(b *testing.B, relay string, clients int) {
	vaultSock, relaySock := shortSocket(b), shortSocket(b)
	pub := softvaulttest.ServeDev(b, b.TempDir(), vaultSock)
	ln, err := net.Listen("unix", relaySock)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	b.Cleanup(func() {
		cancel()
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			vc, err := net.Dial("unix", vaultSock)
			if err != nil {
				b.Error(err)
				conn.Close()
				return
			}
			context.AfterFunc(ctx, func() { conn.Close(); vc.Close() })
			switch relay {
			case "copy":
				wg.Add(2)
				go func() { defer wg.Done(); io.Copy(vc, conn); vc.Close() }()
				go func() { defer wg.Done(); io.Copy(conn, vc); conn.Close() }()
			case "frames":
				vault := protocol.NewStreamClient(vc)
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer vault.Close()
					protocol.ServeStream(ctx, conn, func(ctx context.Context, req []byte) []byte {
						reply, err := vault.RoundTrip(ctx, req)
						if err != nil {
							b.Error(err)
						}
						return reply
					}, 64)
				}()
			}
		}
	}()
	p := loginPaths{pub: pub, direct: streamRT(b, vaultSock), label: "relay"}
	relayRT := streamRT(b, relaySock)
	for range clients {
		a, _ := memAccount("u")
		p.userIDs = append(p.userIDs, a.UserID)
		p.via = append(p.via, relayRT)
	}
	compareLogins(b, p)
}

// BenchmarkDeployedLogin measures what cofferd adds to a login in the shape
// it is deployed in: the built softvault (`softvault dev`) and the built
// cofferd each in a process of its own, this process only the clients.
// The direct path is a stream client on softvault's unix socket; the other
// goes through the product client's Conn, HTTP on loopback, to the cofferd
// process, which reaches softvault over its own unix connection (accounts
// made with `cofferd account add`, in a state database made with `cofferd
// migrate` if this cofferd has one, no login rate limit). cofferd runs with
// GOMAXPROCS 1 or 2 (this machine's cores). Besides BenchmarkLoginLatency's
// metrics it reports each process's CPU per login on each path (from
// /proc/PID/stat: 10 ms ticks). It builds both commands (or takes them
// from the folder COFFER_BENCH_BIN), so it runs only with
// COFFER_BENCH_DEPLOYED=1:
//
//	COFFER_BENCH_DEPLOYED=1 go test ./host -run '^$' -bench 'DeployedLogin' -benchtime 300x
func BenchmarkDeployedLogin(b *testing.B) {
	if os.Getenv("COFFER_BENCH_DEPLOYED") != "1" {
		b.Skip("builds and runs cofferd and softvault; set COFFER_BENCH_DEPLOYED=1")
	}
	bin := os.Getenv("COFFER_BENCH_BIN")
	if bin == "" {
		bin = b.TempDir()
		if err := testbin.Build(bin, "github.com/cofferhsm/coffer/host/cmd/cofferd", "github.com/cofferhsm/coffer/applet/softvault/cmd/softvault"); err != nil {
			b.Fatal(err)
		}
	}
	cofferd, softvault := filepath.Join(bin, "cofferd"), filepath.Join(bin, "softvault")
	// 200 accounts, made once as an operator makes them: in a state
	// database (cofferd migrate, then account add -db) if this cofferd has
	// one, else in an accounts file.
	help, _ := exec.Command(cofferd, "--help").CombinedOutput()
	st := stateFiles{dir: b.TempDir(), db: strings.Contains(string(help), "cofferd migrate")}
	if st.db {
		if out, err := exec.Command(cofferd, "migrate", "-db", st.dsn(st.dir)).CombinedOutput(); err != nil {
			b.Fatalf("cofferd migrate: %v\n%s", err, out)
		}
	}
	var userIDs [][]byte
	var tokens []string
	for i := range 200 {
		out, err := exec.Command(cofferd, append([]string{"account", "add"}, append(st.flags(st.dir), fmt.Sprintf("user%d", i))...)...).Output()
		if err != nil {
			b.Fatalf("cofferd account add: %v", err)
		}
		id, tok := field(b, out, "user id"), field(b, out, "token")
		raw, err := hex.DecodeString(id)
		if err != nil {
			b.Fatal(err)
		}
		userIDs, tokens = append(userIDs, raw), append(tokens, tok)
	}
	for _, procs := range []int{1, 2} {
		for _, clients := range []int{1, 4, 16, 200} {
			b.Run(fmt.Sprintf("cofferd-procs=%d/clients=%d", procs, clients), func(b *testing.B) {
				benchDeployed(b, cofferd, softvault, st, procs, userIDs[:clients], tokens[:clients])
			})
		}
	}
}

// stateFiles is where cofferd keeps its accounts: a SQLite state database
// (db) or an accounts file, in folder dir.
type stateFiles struct {
	dir string
	db  bool
}

func (s stateFiles) dsn(dir string) string { return "sqlite:" + filepath.Join(dir, "state.db") }

// flags are cofferd's flags for the accounts kept in folder dir.
func (s stateFiles) flags(dir string) []string {
	if s.db {
		return []string{"-db", s.dsn(dir)}
	}
	return []string{"-accounts", filepath.Join(dir, "accounts.json")}
}

// copyTo copies the accounts into folder dir.
func (s stateFiles) copyTo(b *testing.B, dir string) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(s.dir, e.Name()))
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), data, 0o600); err != nil {
			b.Fatal(err)
		}
	}
}

func benchDeployed(b *testing.B, cofferd, softvault string, st stateFiles, procs int, userIDs [][]byte, tokens []string) {
	dir, sock := b.TempDir(), shortSocket(b)
	// softvault dev: a fresh vault for every run, so that the users
	// register anew.
	sv := exec.Command(softvault, "dev", "-state", filepath.Join(dir, "vault"), "-listen", "unix:"+sock)
	out, err := sv.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	start(b, sv)
	keyHex := make(chan string, 1)
	go func() {
		const prefix = "development provisioning public key (pin it in clients): "
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if k, ok := strings.CutPrefix(sc.Text(), prefix); ok {
				keyHex <- k
			}
		}
	}()
	var pub ed25519.PublicKey
	select {
	case k := <-keyHex:
		if pub, err = hex.DecodeString(k); err != nil {
			b.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		b.Fatal("softvault dev printed no provisioning key")
	}
	waitFor(b, "softvault's socket", func() bool {
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	// cofferd on a port of its own, its files in this run's folder.
	st.copyTo(b, dir)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cd := exec.Command(cofferd, append(st.flags(dir), "-vault", "unix:"+sock, "-allow-insecure-vault",
		"-listen", addr, "-login-rate", "0", "-log-level", "warn")...)
	cd.Env = append(os.Environ(), "GOMAXPROCS="+strconv.Itoa(procs))
	start(b, cd)
	url := "http://" + addr
	waitFor(b, "cofferd to serve with its vault connected and healthy in the realm", func() bool {
		resp, err := http.Get(url + "/healthz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var h Health
		return json.NewDecoder(resp.Body).Decode(&h) == nil && h.Status == "ok"
	})
	p := loginPaths{pub: pub, direct: streamRT(b, sock), userIDs: userIDs, label: "cofferd",
		procs: map[string]int{"softvault": sv.Process.Pid, "daemon": cd.Process.Pid}}
	p.via = viaHTTP(b, url, tokens)
	compareLogins(b, p)
}

// start starts cmd, its stderr discarded unless the benchmark fails, and
// stops it when the benchmark ends.
func start(b *testing.B, cmd *exec.Cmd) {
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if b.Failed() {
			b.Logf("%s stderr:\n%s", filepath.Base(cmd.Path), stderr.String())
		}
	})
}

// field is the value of the line "  NAME  VALUE" of cofferd account add's
// output.
func field(b *testing.B, out []byte, name string) string {
	for line := range strings.SplitSeq(string(out), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+" "); ok {
			return strings.TrimSpace(v)
		}
	}
	b.Fatalf("no %q in cofferd account add's output:\n%s", name, out)
	return ""
}

// pidCPU is the CPU time (user + system) process pid has used, from
// /proc/PID/stat (in clock ticks, 100 a second on Linux).
func pidCPU(b *testing.B, pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// The fields after the command name in parentheses: state is the
	// third field of the line, utime the 14th and stime the 15th.
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		b.Fatalf("/proc/%d/stat: %q", pid, s)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("/proc/%d/stat: %q", pid, s)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond
}
