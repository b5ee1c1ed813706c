package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// burstHash is a bcrypt hash of cost 10: slow enough (tens of ms) that a
// burst of logins is all in flight before the first verification ends,
// which is when a throttle that counts after hashing would first count.
func burstHash(t *testing.T, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), 10)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// loginBurst sends n password logins for user at once, from one client IP,
// spread over the given instances, and returns how many got each status.
func loginBurst(t *testing.T, nodes []*caddyProc, n int, user, password, ip string) map[int]int {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"strategy": "local", "username": user, "password": password})
	statuses := make([]int, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			req, err := http.NewRequest("POST", nodes[i%len(nodes)].BaseURL+"/authentication", bytes.NewReader(body))
			if err != nil {
				errs[i] = err
				return
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Forwarded-For", ip)
			<-start
			resp, err := harnessClient.Do(req)
			if err != nil {
				errs[i] = err
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		}(i)
	}
	close(start)
	wg.Wait()
	got := map[int]int{}
	for i, s := range statuses {
		if errs[i] != nil {
			t.Fatalf("request %d: %v", i, errs[i])
		}
		got[s]++
	}
	return got
}

// checkBurstThrottled: of a burst of wrong passwords, at most `failures`
// were verified (each verified wrong password is a 401); every other
// login was refused 429 without hashing; the user is banned afterwards.
func checkBurstThrottled(t *testing.T, nodes []*caddyProc, got map[int]int, failures int) {
	t.Helper()
	if got[http.StatusUnauthorized] > failures || got[http.StatusUnauthorized]+got[http.StatusTooManyRequests] != sumStatuses(got) {
		t.Fatalf("burst of wrong passwords answered %v: want at most %d 401 (verifications), the rest 429", got, failures)
	}
	for _, p := range nodes {
		if r := p.loginFrom("10.9.9.9", "alice", "alice-pw"); r.Status != http.StatusTooManyRequests {
			t.Fatalf("after the burst, the right password from another IP at %s: %d %s", p.BaseURL, r.Status, r.Raw)
		}
	}
	verified := 0
	for _, p := range nodes {
		verified += strings.Count(p.Logs(), `"msg":"login failed"`)
	}
	if verified > failures {
		t.Fatalf("%d wrong passwords verified, want at most %d", verified, failures)
	}
}

func sumStatuses(got map[int]int) int {
	n := 0
	for _, c := range got {
		n += c
	}
	return n
}

// burstSite allows more concurrent hashes than the burst, so only the
// throttle can stop a verification.
func burstSite(t *testing.T, store string) string {
	return fmt.Sprintf(`token_auth /private/* {
		realm burst-%s
		signing_key hs256 %s
		%s
		throttle 5 10m 10m
		max_concurrent_hashes 64
		user alice %s
	}
	respond "ok"`, fmt.Sprint(time.Now().UnixNano()), strings.Repeat("s", 32), store, burstHash(t, "alice-pw"))
}

// TestThrottleConcurrentBurst: 50 concurrent wrong passwords for one user
// get at most 5 password verifications (the throttle's failures), on the
// in-process counter (store memory and store bolt alike).
func TestThrottleConcurrentBurst(t *testing.T) {
	for _, store := range []string{"store memory", "store bolt"} {
		t.Run(store, func(t *testing.T) {
			p := startCaddy(t, throttleGlobals, burstSite(t, store))
			got := loginBurst(t, []*caddyProc{p}, 50, "alice", "guess", "10.8.0.1")
			checkBurstThrottled(t, []*caddyProc{p}, got, 5)
		})
	}
}
