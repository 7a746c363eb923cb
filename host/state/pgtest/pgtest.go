// Package pgtest starts a real PostgreSQL server for tests: initdb and
// pg_ctl into a temporary folder, listening only on a unix socket, fsync
// off. One server serves a whole test binary (start it with Main from
// TestMain); each test gets a fresh database from DSN. Where PostgreSQL is
// not installed, DSN skips the test with one line saying so.
//
// It is imported only by tests.
package pgtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Server is a running PostgreSQL server.
type Server struct {
	dir    string // owned by the server's user
	socket string // the folder of the unix socket
	bin    string
	cred   *syscall.Credential
}

var (
	mainCalled atomic.Bool
	once       sync.Once
	server     *Server
	startErr   error
	skipReason string
	dbSeq      atomic.Int64
)

// Main runs the tests of m and stops the server if one was started. Use it
// in TestMain: os.Exit(pgtest.Main(m)).
func Main(m *testing.M) int {
	mainCalled.Store(true)
	code := m.Run()
	if server != nil {
		server.stop()
	}
	return code
}

// Bin finds PostgreSQL's server programs: initdb on PATH, or the newest
// /usr/lib/postgresql/N/bin. "" if there are none.
func Bin() string {
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p)
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	best, bestN := "", -1
	for _, d := range dirs {
		n, err := strconv.Atoi(filepath.Base(filepath.Dir(d)))
		if _, serr := os.Stat(filepath.Join(d, "initdb")); err == nil && serr == nil && n > bestN {
			best, bestN = d, n
		}
	}
	return best
}

// DSN returns the DSN of a new, empty database on the shared server,
// starting it on first use. It skips the test where PostgreSQL is not
// installed.
func DSN(tb testing.TB) string {
	tb.Helper()
	if !mainCalled.Load() {
		tb.Fatal("pgtest: call pgtest.Main from the package's TestMain, which stops the shared server")
	}
	once.Do(func() { server, skipReason, startErr = start() })
	if skipReason != "" {
		tb.Skip(skipReason)
	}
	if startErr != nil {
		tb.Fatalf("pgtest: %v", startErr)
	}
	name := fmt.Sprintf("t%d", dbSeq.Add(1))
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, server.dsn("postgres"))
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	return server.dsn(name)
}

func (s *Server) dsn(db string) string {
	return fmt.Sprintf("host=%s user=postgres dbname=%s sslmode=disable", s.socket, db)
}

// start runs initdb and pg_ctl start. As root (where initdb refuses to
// run) the server runs as the user nobody.
func start() (*Server, string, error) {
	bin := Bin()
	if bin == "" {
		return nil, "pgtest: PostgreSQL is not installed (no initdb on PATH or in /usr/lib/postgresql/*/bin; Debian: apt-get install postgresql)", nil
	}
	// A short folder: a unix socket's path has at most 107 bytes.
	base := "/tmp"
	if _, err := os.Stat(base); err != nil {
		base = os.TempDir()
	}
	dir, err := os.MkdirTemp(base, "pg")
	if err != nil {
		return nil, "", err
	}
	s := &Server{dir: dir, socket: dir, bin: bin}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("nobody")
		if err != nil {
			os.RemoveAll(dir)
			return nil, "pgtest: running as root and there is no user nobody to run PostgreSQL as (initdb refuses root)", nil
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, "", err
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := s.run("initdb", "-D", data, "-U", "postgres", "--auth=trust", "--no-locale", "-E", "UTF8", "--no-sync"); err != nil {
		os.RemoveAll(dir)
		return nil, "", fmt.Errorf("initdb: %v\n%s", err, out)
	}
	opts := strings.Join([]string{
		"-c listen_addresses=''",
		"-c unix_socket_directories=" + s.socket,
		"-c fsync=off",
		"-c synchronous_commit=off",
		"-c full_page_writes=off",
		"-c max_connections=200",
	}, " ")
	if out, err := s.run("pg_ctl", "start", "-w", "-t", "60", "-D", data, "-l", filepath.Join(dir, "log"), "-o", opts); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		os.RemoveAll(dir)
		return nil, "", fmt.Errorf("pg_ctl start: %v\n%s\n%s", err, out, log)
	}
	return s, "", nil
}

func (s *Server) run(prog string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, prog), args...)
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	return cmd.CombinedOutput()
}

func (s *Server) stop() {
	s.run("pg_ctl", "stop", "-m", "immediate", "-w", "-D", filepath.Join(s.dir, "data"))
	os.RemoveAll(s.dir)
}
