package e2e

import (
	"crypto/rand"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/tokenauth/caddy-token-auth/internal/testenv"
)

// TestMaxSessionsTwoInstances: two Caddy processes on one Redis, with
// max_sessions 3, take a burst of logins of one user split between them:
// afterwards exactly 3 of the user's sessions are live, and the session
// opened before the burst is refused by the guard of the instance that
// did not open it.
func TestMaxSessionsTwoInstances(t *testing.T) {
	realm := "max-sessions-" + rand.Text()[:8]
	site := fmt.Sprintf(`
	token_auth /api/* {
		realm %s
		signing_key hs256 %s
		store redis {env.TEST_TOKEN_AUTH_REDIS_URL}
		user alice %s
		max_sessions 3
		max_concurrent_hashes 8
		throttle off
	}
	respond /api/* "hello {http.auth.user.id}" 200
`, realm, e2eSecret, testenv.Hash(t, "alice-pw"))
	url := testenv.RedisURL(t)
	a, b := startClusterNode(t, url, site), startClusterNode(t, url, site)

	first := clusterLogin(t, a)
	if code := clusterGuarded(b, first.str("accessToken")); code != http.StatusOK {
		t.Fatalf("the first session at the other instance: %d", code)
	}
	var wg sync.WaitGroup
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func(p *caddyProc) {
			defer wg.Done()
			res := p.do("POST", "/authentication", map[string]string{"strategy": "local", "username": "alice", "password": "alice-pw"})
			if res.Status != http.StatusCreated {
				t.Errorf("login: %d %s", res.Status, res.Raw)
			}
		}([]*caddyProc{a, b}[i%2])
	}
	wg.Wait()

	status, body, raw := b.admin("GET", "/token_auth/"+realm+"/sessions?user=alice")
	if status != http.StatusOK {
		t.Fatalf("list: %d %s", status, raw)
	}
	live := 0
	for _, s := range body["sessions"].([]any) {
		if s.(map[string]any)["revoked"] == false {
			live++
		}
	}
	if live != 3 {
		t.Fatalf("%d live sessions after 11 logins with max_sessions 3, want 3:\n%s", live, raw)
	}
	awaitSessionRefused(t, b, first, "the oldest session refused at the other instance")
}
