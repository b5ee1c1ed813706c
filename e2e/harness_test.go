package e2e

// Package e2e holds the process-level tests: they build the real Caddy
// binary of ../cmd/caddy once per test run and start it as a separate
// process (with redis-server, Chromium, node or fail2ban-regex where a test
// needs them), so they exercise exactly what operators run, including
// restarts and reloads. They see the plugin only as operators do: the
// binary, HTTP and files. `go test -short ./...` skips them all (TestMain).

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenauth/caddy-token-auth/internal/testenv"
)

// TestMain skips the whole package under -short: every test here starts
// processes, and -short is the quick loop that starts none.
func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e: skipped under -short (every test starts processes)")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// lookProgram finds a program a test needs; without it the test fails
// under CI=true and skips elsewhere (setup names the script installing it).
func lookProgram(t testing.TB, setup, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		testenv.Need(t, fmt.Sprintf("%s is not installed (%s installs it)", name, setup))
	}
	return path
}

var (
	caddyBinOnce sync.Once
	caddyBinPath string
	caddyBinErr  error
)

// caddyBinary builds cmd/caddy once per test process.
func caddyBinary(t testing.TB) string {
	t.Helper()
	caddyBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "token-auth-caddy-")
		if err != nil {
			caddyBinErr = err
			return
		}
		caddyBinPath = filepath.Join(dir, "caddy")
		out, err := exec.Command("go", "build", "-o", caddyBinPath, "../cmd/caddy").CombinedOutput()
		if err != nil {
			caddyBinErr = fmt.Errorf("building caddy: %v\n%s", err, out)
		}
	})
	if caddyBinErr != nil {
		t.Fatal(caddyBinErr)
	}
	return caddyBinPath
}

// caddyProc is one running Caddy process.
type caddyProc struct {
	t        testing.TB
	bin      string
	dir      string // working directory; holds the Caddyfile and data
	adminURL string
	BaseURL  string // http://127.0.0.1:<port>
	Port     int
	env      []string
	cmd      *exec.Cmd
	exited   chan struct{} // closed when cmd ends
	logPath  string        // the process's stdout and stderr
}

// caddyOptions tunes a started Caddy.
type caddyOptions struct {
	Dir string   // share a working/data directory with another process
	Env []string // extra environment, KEY=VALUE
	// Host is the site's host name, default 127.0.0.1 (WebAuthn needs a
	// name: localhost). It still listens on 127.0.0.1 only.
	Host string
}

// startCaddy writes a Caddyfile whose site block is body, served on a
// fresh port over plain HTTP, and starts Caddy with it. In body, {PORT}
// and {DIR} are replaced by the port and the working directory. Global
// options may be given in globals. The process is stopped when the test ends.
func startCaddy(t testing.TB, globals, body string, opts ...caddyOptions) *caddyProc {
	t.Helper()
	var o caddyOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	p := &caddyProc{t: t, bin: caddyBinary(t), dir: o.Dir, Port: testenv.FreePort(t), env: o.Env}
	p.BaseURL = fmt.Sprintf("http://%s:%d", o.Host, p.Port)
	p.adminURL = fmt.Sprintf("http://127.0.0.1:%d", testenv.FreePort(t))
	p.writeCaddyfile(globals, body)
	p.start()
	t.Cleanup(p.stop)
	return p
}

func (p *caddyProc) writeCaddyfile(globals, body string) {
	p.t.Helper()
	cfg := fmt.Sprintf(`{
	admin %s
	storage file_system %s
	log {
		output stderr
		format json
		level DEBUG
	}
	%s
}

%s {
%s
}
`, strings.TrimPrefix(p.adminURL, "http://"), filepath.Join(p.dir, "storage"), globals, p.BaseURL, body)
	cfg = strings.NewReplacer("{PORT}", fmt.Sprint(p.Port), "{DIR}", p.dir).Replace(cfg)
	if err := os.WriteFile(filepath.Join(p.dir, "Caddyfile"), []byte(cfg), 0o600); err != nil {
		p.t.Fatal(err)
	}
}

func (p *caddyProc) start() {
	p.t.Helper()
	p.launch()
	p.waitReady()
}

// launch starts the process without waiting for it to be ready; exited
// is closed when it ends.
func (p *caddyProc) launch() {
	p.t.Helper()
	// The process writes its output straight into a file: a line it logs
	// before answering a request is there by the time the answer arrives
	// (a pipe would hand it over a moment later).
	logFile, err := os.CreateTemp(p.dir, "caddy-output-*.log") // several processes may share dir
	if err != nil {
		p.t.Fatal(err)
	}
	p.logPath = logFile.Name()
	defer logFile.Close() // the child keeps its own descriptor
	p.cmd = exec.Command(p.bin, "run", "--config", filepath.Join(p.dir, "Caddyfile"), "--adapter", "caddyfile")
	p.cmd.Dir = p.dir
	p.cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+filepath.Join(p.dir, "xdg-data"), "XDG_CONFIG_HOME="+filepath.Join(p.dir, "xdg-config"), "HOME="+p.dir)
	p.cmd.Env = append(p.cmd.Env, p.env...)
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	exited, cmd := make(chan struct{}), p.cmd
	p.exited = exited
	go func() { _ = cmd.Wait(); close(exited) }()
}

// waitReady polls the site until it answers, bounded in time; a process
// that exits (a config error, say) fails at once with its logs.
func (p *caddyProc) waitReady() {
	p.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			p.t.Fatalf("caddy exited during startup; logs:\n%s", p.Logs())
		default:
		}
		resp, err := http.Get(p.adminURL + "/config/")
		if err == nil {
			resp.Body.Close()
			conn, err := net.DialTimeout("tcp", strings.TrimPrefix(p.BaseURL, "http://"), time.Second)
			if err == nil {
				conn.Close()
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.t.Fatalf("caddy did not become ready; logs:\n%s", p.Logs())
}

// stop ends the process gracefully (as `caddy stop` would).
func (p *caddyProc) stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	if resp, err := http.Post(p.adminURL+"/stop", "", nil); err == nil {
		resp.Body.Close()
	}
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	p.cmd = nil
}

// restart stops the process and starts it again with the same config.
func (p *caddyProc) restart() {
	p.t.Helper()
	p.stop()
	p.start()
}

// reload rewrites the Caddyfile and loads it through the admin API, as
// `caddy reload` does.
func (p *caddyProc) reload(globals, body string) {
	p.t.Helper()
	p.writeCaddyfile(globals, body)
	out, err := exec.Command(p.bin, "reload", "--config", filepath.Join(p.dir, "Caddyfile"), "--adapter", "caddyfile", "--address", strings.TrimPrefix(p.adminURL, "http://")).CombinedOutput()
	if err != nil {
		p.t.Fatalf("caddy reload: %v\n%s\nlogs:\n%s", err, out, p.Logs())
	}
}

// Logs returns everything the process printed so far.
func (p *caddyProc) Logs() string {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		p.t.Errorf("reading caddy's output: %v", err)
	}
	return string(data)
}

// apiResponse is a decoded JSON answer.
type apiResponse struct {
	Status int
	Header http.Header
	Body   map[string]any
	Raw    string
}

// do sends a request and decodes a JSON answer; body may be nil, a string
// (sent as is) or anything else (sent as JSON).
func (p *caddyProc) do(method, path string, body any, header ...string) apiResponse {
	p.t.Helper()
	var rd io.Reader
	contentType := ""
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
		contentType = "application/json"
	default:
		data, err := json.Marshal(b)
		if err != nil {
			p.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
		contentType = "application/json"
	}
	req, err := http.NewRequest(method, p.BaseURL+path, rd)
	if err != nil {
		p.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, raw := p.send(req, header...)
	out := apiResponse{Status: resp.StatusCode, Header: resp.Header, Raw: string(raw)}
	_ = json.Unmarshal(raw, &out.Body)
	return out
}

// harnessClient follows no redirects and keeps no idle connections, so a
// request right after a reload or restart never lands on a connection the
// old server is closing.
var harnessClient = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Transport:     &http.Transport{DisableKeepAlives: true},
}

// send sends req with the given header name, value pairs, without
// following redirects, and returns the answer with its whole body read.
func (p *caddyProc) send(req *http.Request, header ...string) (*http.Response, []byte) {
	p.t.Helper()
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := harnessClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp, raw
}

// str returns a string field of a decoded answer, following dotted paths.
func (a apiResponse) str(path string) string {
	var cur any = a.Body
	for _, k := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return ""
		}
		cur = m[k]
	}
	s, _ := cur.(string)
	return s
}

// What these tests know of the plugin without its internals: the cookie
// names and the body limit are the contract's (CONTRACT.md), the token
// size limit is tokens.go's maxTokenSize.
const (
	accessCookieName  = "access_token"
	refreshCookieName = "refresh_token"
	maxBodySize       = 64 << 10
	maxTokenSize      = 8 << 10
)

// e2eSecret is the HS256 secret of every site in these tests; some take it
// from the environment (E2E_TOKEN_SECRET), as operators are told to pass it.
const e2eSecret = "e2e-test-secret-0123456789abcdefghijklmnop"
