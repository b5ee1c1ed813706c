package e2e

// Durability of answered rotations on the bolt store: kill -9 right after
// an answer loses nothing.

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// TestBoltRotationsSurviveKill: 16 clients rotate their own sessions' refresh
// tokens as fast as they can against `store bolt` (rotations share group
// commits); right after one answer, Caddy is killed with SIGKILL, then
// started again on the same database, three times over. Every client's last answered refresh
// token must still be its session's current one: rotating it again is
// "rotated" (nothing answered was lost), or, for a client whose next
// request was in flight when Caddy died and may have committed, "graced".
// A lost answered rotation would show as "caught_up" (the token is ahead of
// the store), a lost session as a refusal.
func TestBoltRotationsSurviveKill(t *testing.T) {
	p := startE2E(t, "store bolt {DIR}/sessions.db")
	const clients = 16
	tokens := make([]string, clients)
	for i := range tokens {
		tokens[i] = p.login(t).str("refreshToken")
	}

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	rotate := func(rt string) (int, string, error) {
		body, _ := json.Marshal(map[string]string{"action": "refresh", "refresh_token": rt})
		resp, err := client.Post(p.BaseURL+"/authentication", "application/json", bytes.NewReader(body))
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		var res struct{ RefreshToken string }
		if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
			return resp.StatusCode, "", err
		}
		return resp.StatusCode, res.RefreshToken, nil
	}

	for round := 1; round <= 3; round++ {
		inFlight := storm(t, p, rotate, tokens)
		if t.Failed() {
			return
		}
		p.start() // the same directory, so the same database
		for i, rt := range tokens {
			res := p.refresh(rt)
			if res.Status != http.StatusCreated {
				t.Fatalf("round %d, client %d: its last answered refresh token is refused after the kill: %d %s", round, i, res.Status, res.Raw)
			}
			tokens[i] = res.str("refreshToken")
		}
		outcomes := map[string]int{}
		for _, line := range strings.Split(p.Logs(), "\n") { // this process's log: the checks only
			var entry struct{ Msg, Outcome string }
			if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == "session refreshed" {
				outcomes[entry.Outcome]++
			}
		}
		if outcomes["rotated"]+outcomes["graced"] != clients || outcomes["graced"] > inFlight || outcomes["caught_up"] != 0 {
			t.Fatalf("round %d, after the kill: outcomes %v, want %d rotated or graced (graced at most %d, the clients with a request in flight), none caught_up",
				round, outcomes, clients, inFlight)
		}
	}
}

// storm rotates every client's refresh token in a loop until 200 rotations
// are answered, then kills Caddy (SIGKILL) right after the last answer; it
// returns once Caddy is gone, with how many clients had a request in
// flight. tokens holds each client's last answered refresh token.
func storm(t *testing.T, p *caddyProc, rotate func(string) (int, string, error), tokens []string) (inFlight int) {
	var answered atomic.Int64
	var killOnce sync.Once
	flying := make([]bool, len(tokens))
	var wg sync.WaitGroup
	for i := range tokens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				status, next, err := rotate(tokens[i])
				if err != nil {
					flying[i] = true // no answer: it may or may not have committed
					return
				}
				if status != http.StatusCreated || next == "" {
					t.Errorf("client %d: rotation answered %d", i, status)
					killOnce.Do(func() { _ = p.cmd.Process.Kill() })
					return
				}
				tokens[i] = next
				if answered.Add(1) >= 200 {
					killOnce.Do(func() { _ = p.cmd.Process.Kill() }) // SIGKILL, right after this answer
					return
				}
			}
		}()
	}
	wg.Wait()
	<-p.exited
	p.cmd = nil
	for _, f := range flying {
		if f {
			inFlight++
		}
	}
	t.Logf("%d rotations answered before the kill, %d in flight", answered.Load(), inFlight)
	return inFlight
}
