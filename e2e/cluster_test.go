package e2e

// End-to-end tests of a cluster: real Caddy processes sharing one real
// redis-server, and the admin API through Caddy's admin endpoint.

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokenauth/caddy-token-auth/internal/testenv"
)

// clusterSite is a site guarded on /api/* with sessions in Redis, whose
// URL comes from the environment (so placeholders are exercised too).
func clusterSite(t *testing.T, realm string) string {
	return clusterSiteOn(t, realm, "store redis {env.TEST_TOKEN_AUTH_REDIS_URL}")
}

// clusterSiteOn is clusterSite with another store line.
func clusterSiteOn(t *testing.T, realm, store string) string {
	return fmt.Sprintf(`
	token_auth /api/* {
		realm %s
		signing_key hs256 %s
		%s
		reuse_grace 0
		user alice %s
	}
	respond /api/* "hello {http.auth.user.id}" 200
`, realm, e2eSecret, store, testenv.Hash(t, "alice-pw"))
}

// redisForms are the store lines of the three forms of the Redis store on
// the run's shared servers (one server, Sentinel, 3-master Cluster), every
// server given by a placeholder, with the environment that fills them in.
var redisForms = []struct {
	name  string
	store func(t *testing.T) (line string, env []string)
}{
	{"redis", func(t *testing.T) (string, []string) {
		return "store redis {env.TEST_TOKEN_AUTH_REDIS_URL}", []string{"TEST_TOKEN_AUTH_REDIS_URL=" + testenv.RedisURL(t)}
	}},
	{"redis_sentinel", func(t *testing.T) (string, []string) {
		master, sentinels := testenv.RedisSentinel(t)
		line, env := urlPlaceholders(sentinels)
		return "store redis_sentinel {env.TEST_TOKEN_AUTH_MASTER} " + line, append(env, "TEST_TOKEN_AUTH_MASTER="+master)
	}},
	{"redis_cluster", func(t *testing.T) (string, []string) {
		line, env := urlPlaceholders(testenv.RedisCluster(t))
		return "store redis_cluster " + line, env
	}},
}

// urlPlaceholders names each URL by an environment placeholder.
func urlPlaceholders(urls []string) (line string, env []string) {
	var names []string
	for i, u := range urls {
		name := fmt.Sprintf("TEST_TOKEN_AUTH_REDIS_%d", i)
		env = append(env, name+"="+u)
		names = append(names, "{env."+name+"}")
	}
	return strings.Join(names, " "), env
}

func startClusterNode(t *testing.T, redisURL, site string) *caddyProc {
	return startCaddy(t, "", site, caddyOptions{Env: []string{"TEST_TOKEN_AUTH_REDIS_URL=" + redisURL}})
}

func clusterLogin(t *testing.T, p *caddyProc) apiResponse {
	t.Helper()
	res := p.do("POST", "/authentication", map[string]string{"strategy": "local", "username": "alice", "password": "alice-pw"})
	if res.Status != http.StatusCreated {
		t.Fatalf("login: %d %s", res.Status, res.Raw)
	}
	return res
}

func refresh(p *caddyProc, rt string) apiResponse {
	return p.do("POST", "/authentication", map[string]string{"action": "refresh", "refresh_token": rt})
}

func clusterGuarded(p *caddyProc, at string) int {
	return p.do("GET", "/api/thing", nil, "Authorization", "Bearer "+at).Status
}

func sidOf(res apiResponse) string { return res.str("authentication.payload.sid") }

// admin sends a request to the process's admin endpoint.
func (p *caddyProc) admin(method, path string) (int, map[string]any, string) {
	p.t.Helper()
	req, err := http.NewRequest(method, p.adminURL+path, nil)
	if err != nil {
		p.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var body map[string]any
	_ = json.Unmarshal(raw, &body)
	return resp.StatusCode, body, string(raw)
}

// TestClusterTwoInstances: two Caddy processes share one Redis: a session
// opened on one is refreshed on the other, reuse detected anywhere kills
// it everywhere, and logouts and admin revocations reach the other
// instance within 5 s.
//
// It runs on each form of Redis: one server, Sentinel and a 3-master
// Cluster.
func TestClusterTwoInstances(t *testing.T) {
	for _, form := range redisForms {
		t.Run(form.name, func(t *testing.T) {
			store, env := form.store(t)
			testClusterTwoInstances(t, clusterSiteOn(t, "cluster-"+rand.Text()[:8], store), env)
		})
	}
}

func testClusterTwoInstances(t *testing.T, site string, env []string) {
	a := startCaddy(t, "", site, caddyOptions{Env: env})
	b := startCaddy(t, "", site, caddyOptions{Env: env})

	// login at A, refresh at B, the old refresh token again at A
	first := clusterLogin(t, a)
	second := refresh(b, first.str("refreshToken"))
	if second.Status != http.StatusCreated {
		t.Fatalf("refresh at B: %d %s", second.Status, second.Raw)
	}
	if clusterGuarded(a, second.str("accessToken")) != 200 || clusterGuarded(b, first.str("accessToken")) != 200 {
		t.Fatal("tokens must be accepted by both instances")
	}
	reuse := refresh(a, first.str("refreshToken"))
	if reuse.Status != http.StatusUnauthorized || !strings.Contains(reuse.Raw, `"reason":"refresh_token_reused"`) {
		t.Fatalf("reuse at A: %d %s", reuse.Status, reuse.Raw)
	}
	// the session is dead at both
	if clusterGuarded(a, second.str("accessToken")) != http.StatusUnauthorized {
		t.Fatal("A still accepts the reused session's access token")
	}
	testenv.Eventually(t, 5*time.Second, "B refuses the reused session", func() bool {
		return clusterGuarded(b, second.str("accessToken")) == http.StatusUnauthorized
	})
	if res := refresh(b, second.str("refreshToken")); res.Status != http.StatusUnauthorized {
		t.Fatalf("refresh of the revoked session at B: %d %s", res.Status, res.Raw)
	}

	// logout at A: refused at B within 5 s
	third := clusterLogin(t, a)
	if clusterGuarded(b, third.str("accessToken")) != 200 {
		t.Fatal("B must accept a fresh session")
	}
	if res := a.do("DELETE", "/authentication", nil, "Authorization", "Bearer "+third.str("accessToken")); res.Status != 200 {
		t.Fatalf("logout at A: %d %s", res.Status, res.Raw)
	}
	testenv.Eventually(t, 5*time.Second, "B refuses the logged-out session", func() bool {
		return clusterGuarded(b, third.str("accessToken")) == http.StatusUnauthorized
	})

	// an admin revocation at B: refused at A within 5 s
	fourth := clusterLogin(t, a)
	if clusterGuarded(a, fourth.str("accessToken")) != 200 {
		t.Fatal("A must accept a fresh session")
	}
	status, _, raw := b.admin("DELETE", "/token_auth/"+realmOf(site)+"/sessions/"+sidOf(fourth))
	if status != 200 {
		t.Fatalf("admin revoke at B: %d %s", status, raw)
	}
	awaitSessionRefused(t, a, fourth, "A refuses the session revoked through B's admin API")
}

// awaitSessionRefused waits until p's guard refuses the session's access
// token (a revocation made at another instance reaches it within 5 s),
// then checks that its refresh token no longer refreshes there.
func awaitSessionRefused(t *testing.T, p *caddyProc, session apiResponse, what string) {
	t.Helper()
	testenv.Eventually(t, 5*time.Second, what, func() bool {
		return clusterGuarded(p, session.str("accessToken")) == http.StatusUnauthorized
	})
	if res := refresh(p, session.str("refreshToken")); res.Status != http.StatusUnauthorized {
		t.Fatalf("%s: refresh answered %d %s, want 401", what, res.Status, res.Raw)
	}
}

func realmOf(site string) string {
	_, rest, _ := strings.Cut(site, "realm ")
	name, _, _ := strings.Cut(rest, "\n")
	return strings.TrimSpace(name)
}

// TestAdminAPISessions: listing and revoking through Caddy's admin
// endpoint, and its error answers.
func TestAdminAPISessions(t *testing.T) {
	url := testenv.RedisURL(t)
	site := clusterSite(t, "admin-"+rand.Text()[:8])
	realm := realmOf(site)
	a := startClusterNode(t, url, site)
	b := startClusterNode(t, url, site)
	one, two := clusterLogin(t, a), clusterLogin(t, b)

	status, body, raw := a.admin("GET", "/token_auth/"+realm+"/sessions?user=alice")
	if status != 200 {
		t.Fatalf("list: %d %s", status, raw)
	}
	for _, tok := range []string{one.str("accessToken"), one.str("refreshToken"), two.str("accessToken"), two.str("refreshToken")} {
		if strings.Contains(raw, tok) {
			t.Fatal("the listing contains a token")
		}
	}
	list, _ := body["sessions"].([]any)
	if len(list) != 2 {
		t.Fatalf("list: %s", raw)
	}
	for i, want := range []string{sidOf(one), sidOf(two)} {
		s := list[i].(map[string]any)
		if s["sid"] != want || s["user"] != "alice" || s["revoked"] != false {
			t.Fatalf("session %d: %v", i, s)
		}
		for _, k := range []string{"created", "last_used", "expires"} {
			if _, err := time.Parse(time.RFC3339, fmt.Sprint(s[k])); err != nil {
				t.Fatalf("%s is not RFC 3339: %v", k, s[k])
			}
		}
	}

	// revoke every session of alice through A; B refuses them within 5 s
	status, body, raw = a.admin("DELETE", "/token_auth/"+realm+"/sessions?user=alice")
	if status != 200 || len(body["revoked"].([]any)) != 2 {
		t.Fatalf("revoke user: %d %s", status, raw)
	}
	for _, res := range []apiResponse{one, two} {
		testenv.Eventually(t, 5*time.Second, "B refuses alice's revoked sessions", func() bool {
			return clusterGuarded(b, res.str("accessToken")) == http.StatusUnauthorized
		})
	}
	_, body, raw = b.admin("GET", "/token_auth/"+realm+"/sessions?user=alice")
	for _, s := range body["sessions"].([]any) {
		if s.(map[string]any)["revoked"] != true {
			t.Fatalf("listing after revocation: %s", raw)
		}
	}
	if _, body, _ = a.admin("GET", "/token_auth/"+realm+"/sessions?user=nobody"); len(body["sessions"].([]any)) != 0 {
		t.Fatal("an unknown user has sessions")
	}

	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/token_auth/no-such-realm/sessions?user=alice", 404},
		{"GET", "/token_auth/" + realm + "/sessions", 400},
		{"DELETE", "/token_auth/" + realm + "/sessions", 400},
		{"DELETE", "/token_auth/" + realm + "/sessions/no-such-session", 404},
		{"PUT", "/token_auth/" + realm + "/sessions?user=alice", 405},
		{"GET", "/token_auth/" + realm + "/other", 404},
	} {
		if status, _, raw := a.admin(tc.method, tc.path); status != tc.status {
			t.Fatalf("%s %s: %d %s, want %d", tc.method, tc.path, status, raw, tc.status)
		}
	}
}

// TestClusterRedisOutage: Redis stopped under a running Caddy: login and
// refresh answer 503 with Retry-After (never 401), guarded requests with
// valid tokens still pass, the outage is logged once; Redis back, login
// works again without restarting Caddy.
func TestClusterRedisOutage(t *testing.T) {
	srv := testenv.StartRedis(t) // its own server: this test stops it
	p := startClusterNode(t, srv.URL, clusterSite(t, "outage"))
	pair := clusterLogin(t, p)

	srv.Stop()
	for i := 0; i < 3; i++ {
		res := p.do("POST", "/authentication", map[string]string{"strategy": "local", "username": "alice", "password": "alice-pw"})
		if res.Status != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" || res.str("name") != "Unavailable" {
			t.Fatalf("login while Redis is down: %d %v %s", res.Status, res.Header, res.Raw)
		}
		if res := refresh(p, pair.str("refreshToken")); res.Status != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
			t.Fatalf("refresh while Redis is down: %d %s", res.Status, res.Raw)
		}
		if status := clusterGuarded(p, pair.str("accessToken")); status != 200 {
			t.Fatalf("guarded request while Redis is down: %d", status)
		}
	}
	if n := strings.Count(p.Logs(), "session store unreachable"); n != 1 {
		t.Fatalf("outage logged %d times, want once:\n%s", n, p.Logs())
	}

	srv.Start()
	testenv.Eventually(t, 15*time.Second, "login after Redis is back", func() bool {
		return p.do("POST", "/authentication", map[string]string{"strategy": "local", "username": "alice", "password": "alice-pw"}).Status == http.StatusCreated
	})
	again := clusterLogin(t, p)
	if res := refresh(p, again.str("refreshToken")); res.Status != http.StatusCreated {
		t.Fatalf("refresh after Redis is back: %d %s", res.Status, res.Raw)
	}
	if !strings.Contains(p.Logs(), "session store reachable again") {
		t.Fatal("recovery not logged")
	}
}
