package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// TestFail2banFilter runs fail2ban's own fail2ban-regex with
// docs/fail2ban/caddy-token-auth.conf over the log of real failed
// logins: it must find each client IP once per failure, and never an IP
// a client smuggled into the user name.
func TestFail2banFilter(t *testing.T) {
	bin := lookProgram(t, "test.d/setup-fail2ban.sh", "fail2ban-regex")
	p := startCaddy(t, throttleGlobals, throttleSite(t))
	p.loginFrom("10.1.0.1", "alice", "wrong")
	p.loginFrom("10.1.0.1", "nobody", "wrong")
	p.loginFrom("10.1.0.2", `x","client_ip":"6.6.6.6`, "wrong")
	p.loginFrom("10.1.0.3", "alice", "alice-pw") // a success: no match

	logFile := filepath.Join(t.TempDir(), "caddy.log")
	if err := os.WriteFile(logFile, []byte(p.Logs()), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "-v", logFile, "../docs/fail2ban/caddy-token-auth.conf").CombinedOutput()
	if err != nil {
		t.Fatalf("fail2ban-regex: %v\n%s", err, out)
	}
	// hosts are listed under the failregex as "|      <ip>  <date>"
	var hosts []string
	for _, m := range regexp.MustCompile(`(?m)^\|\s+([0-9a-fA-F.:]+)\s{2}\S`).FindAllStringSubmatch(string(out), -1) {
		hosts = append(hosts, m[1])
	}
	sort.Strings(hosts)
	if got := strings.Join(hosts, " "); got != "10.1.0.1 10.1.0.1 10.1.0.2" {
		t.Fatalf("fail2ban found hosts %q, want 10.1.0.1 twice and 10.1.0.2 once\n%s", got, out)
	}
}
