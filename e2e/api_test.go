package e2e

// End-to-end tests of issue 2 through a real Caddy process (harness_test.go):
// login, guard, refresh rotation with reuse detection, token confusion,
// concurrent refreshes, restarts and reloads, bad input.

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/tokenauth/caddy-token-auth/internal/testenv"
)

const e2ePassword = "correct horse battery staple"

// e2eSite is a site block with a guarded /private/ area whose handler
// echoes the identity placeholders, a public page, and the endpoint.
// extra is added inside the token_auth block.
func e2eSite(t testing.TB, extra string) string {
	return fmt.Sprintf(`
	token_auth /private/* {
		signing_key hs256 {env.E2E_TOKEN_SECRET}
		issuer e2e-issuer
		audience e2e-audience
		user alice %s {
			email alice@example.com
			name "Alice Example"
			roles admin editor
			claim team blue
		}
		%s
	}
	respond /private/* "private for {http.auth.user.id} <{http.auth.user.email}> roles={http.auth.user.roles} team={http.auth.user.team} sid={http.auth.user.sid}" 200
	respond "public" 200
`, testenv.Hash(t, e2ePassword), extra)
}

var e2eEnv = caddyOptions{Env: []string{"E2E_TOKEN_SECRET=" + e2eSecret}}

func startE2E(t *testing.T, extra string, opts ...caddyOptions) *caddyProc {
	t.Helper()
	o := e2eEnv
	if len(opts) > 0 {
		o.Dir = opts[0].Dir
	}
	return startCaddy(t, "", e2eSite(t, extra), o)
}

// login logs alice in and returns the answer, failing the test unless 201.
func (p *caddyProc) login(t *testing.T) apiResponse {
	t.Helper()
	res := p.do("POST", "/authentication", map[string]string{"strategy": "local", "username": "alice", "password": e2ePassword})
	if res.Status != http.StatusCreated || res.str("accessToken") == "" || res.str("refreshToken") == "" {
		t.Fatalf("login: %d %s", res.Status, res.Raw)
	}
	return res
}

// refresh presents a refresh token in the seed's shape.
func (p *caddyProc) refresh(rt string) apiResponse {
	return p.do("POST", "/authentication", map[string]string{"action": "refresh", "refresh_token": rt})
}

// private requests the guarded area with a bearer token.
func (p *caddyProc) private(token string) apiResponse {
	return p.do("GET", "/private/x", nil, "Authorization", "Bearer "+token)
}

// kidOf returns the key id in a token's header.
func kidOf(t testing.TB, tok string) string {
	t.Helper()
	h, _ := testenv.JWTParts(t, tok)
	kid, _ := h["kid"].(string)
	if kid == "" {
		t.Fatalf("token without kid: %v", h)
	}
	return kid
}

// genOf returns the generation claim of a refresh token.
func genOf(t testing.TB, rt string) int {
	t.Helper()
	_, c := testenv.JWTParts(t, rt)
	g, ok := c["gen"].(float64)
	if !ok {
		t.Fatalf("refresh token without gen claim: %v", c)
	}
	return int(g)
}

func wantStatus(t *testing.T, what string, res apiResponse, status int) {
	t.Helper()
	if res.Status != status {
		t.Fatalf("%s: got %d, want %d: %s", what, res.Status, status, res.Raw)
	}
}

// wantNotAuthenticated checks a Feathers NotAuthenticated answer.
func wantNotAuthenticated(t *testing.T, what string, res apiResponse) {
	t.Helper()
	wantStatus(t, what, res, http.StatusUnauthorized)
	if res.str("name") != "NotAuthenticated" || res.str("className") != "not-authenticated" || res.Body["code"] != float64(401) {
		t.Fatalf("%s: not a Feathers NotAuthenticated error: %s", what, res.Raw)
	}
}

func TestE2ELoginGuardRefreshAndReuse(t *testing.T) {
	const grace = 2 * time.Second
	p := startE2E(t, "reuse_grace 2s")

	// login: the Feathers answer shape, typed tokens, no hash in `user`
	login := p.login(t)
	at1, rt1 := login.str("accessToken"), login.str("refreshToken")
	if login.str("authentication.strategy") != "local" || login.str("authentication.accessToken") != at1 {
		t.Fatalf("authentication object: %s", login.Raw)
	}
	if login.str("authentication.payload.sub") != "alice" || login.str("user.id") != "alice" ||
		login.str("user.email") != "alice@example.com" || login.str("user.team") != "blue" {
		t.Fatalf("payload or user: %s", login.Raw)
	}
	if strings.Contains(login.Raw, "$2a$") || strings.Contains(login.Raw, "password") {
		t.Fatalf("login answer leaks the hash: %s", login.Raw)
	}
	if h, _ := testenv.JWTParts(t, at1); h["typ"] != "at+jwt" || h["alg"] != "HS256" || h["kid"] == "" {
		t.Fatalf("access token header: %v", h)
	}
	if h, _ := testenv.JWTParts(t, rt1); h["typ"] != "rt+jwt" || h["kid"] == "" {
		t.Fatalf("refresh token header: %v", h)
	}
	sid := testenv.Claim(t, at1, "sid")
	if sid == "" || testenv.Claim(t, rt1, "sid") != sid || genOf(t, rt1) != 1 {
		t.Fatalf("sid/gen claims: at sid %q, rt %s", sid, rt1)
	}
	if _, c := testenv.JWTParts(t, at1); c["iss"] != "e2e-issuer" || fmt.Sprint(c["aud"]) != "[e2e-audience]" {
		t.Fatalf("iss/aud: %v", c)
	}

	// the guard: no token is refused with a Bearer challenge; a token lets
	// the request through with the identity as placeholders
	res := p.do("GET", "/private/x", nil)
	wantNotAuthenticated(t, "no token", res)
	if !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("WWW-Authenticate: %q", res.Header.Get("WWW-Authenticate"))
	}
	if res := p.do("GET", "/public", nil); res.Status != 200 || res.Raw != "public" {
		t.Fatalf("public page: %d %s", res.Status, res.Raw)
	}
	res = p.private(at1)
	wantStatus(t, "guarded request", res, 200)
	want := "private for alice <alice@example.com> roles=admin,editor team=blue sid=" + sid
	if res.Raw != want {
		t.Fatalf("placeholders: got %q, want %q", res.Raw, want)
	}
	for _, h := range [][2]string{{"Authorization", "JWT " + at1}, {"Authorization", at1}} {
		wantStatus(t, h[1][:4], p.do("GET", "/private/x", nil, h[0], h[1]), 200)
	}

	// refresh: a new pair of the next generation, same session
	ref := p.refresh(rt1)
	wantStatus(t, "refresh", ref, http.StatusCreated)
	rotatedAt := time.Now()
	at2, rt2 := ref.str("accessToken"), ref.str("refreshToken")
	if genOf(t, rt2) != 2 || testenv.Claim(t, rt2, "sid") != sid || testenv.Claim(t, at2, "sid") != sid {
		t.Fatalf("refresh answer: gen %d, %s", genOf(t, rt2), ref.Raw)
	}
	if ref.str("authentication.strategy") != "refresh" || ref.str("user.id") != "alice" {
		t.Fatalf("refresh answer shape: %s", ref.Raw)
	}
	wantStatus(t, "guard with refreshed token", p.private(at2), 200)

	// the previous refresh token within reuse_grace (two tabs racing):
	// tokens of the current generation, in the Feathers request shape
	raced := p.do("POST", "/authentication", map[string]string{"strategy": "refresh", "refreshToken": rt1})
	if time.Since(rotatedAt) >= grace {
		// not an assertion on time: the replay simply did not happen inside
		// the window, so this run cannot say anything about the window
		t.Fatalf("the replay came %s after the rotation, past reuse_grace; the machine is too loaded for this test", time.Since(rotatedAt))
	}
	wantStatus(t, "replay within grace", raced, http.StatusCreated)
	if g := genOf(t, raced.str("refreshToken")); g != 2 {
		t.Fatalf("replay within grace got generation %d, want the current 2", g)
	}
	wantStatus(t, "guard with graced token", p.private(raced.str("accessToken")), 200)

	// after the window the same replay is reuse: the session is revoked
	time.Sleep(grace + 500*time.Millisecond - time.Since(rotatedAt))
	reuse := p.refresh(rt1)
	wantNotAuthenticated(t, "replay after grace", reuse)
	if data, _ := reuse.Body["data"].(map[string]any); data["reason"] != "refresh_token_reused" {
		t.Fatalf("reuse answer lacks data.reason: %s", reuse.Raw)
	}

	// ... and with it every token of the session: the newest refresh token,
	// the access tokens issued with it and before it
	wantNotAuthenticated(t, "newest refresh token after reuse", p.refresh(rt2))
	wantNotAuthenticated(t, "graced refresh token after reuse", p.refresh(raced.str("refreshToken")))
	for i, at := range []string{at1, at2, raced.str("accessToken")} {
		wantNotAuthenticated(t, fmt.Sprintf("access token %d after reuse", i), p.private(at))
	}
	// Feathers reAuthenticate is refused too
	wantNotAuthenticated(t, "jwt strategy after reuse", p.do("POST", "/authentication", map[string]string{"strategy": "jwt", "accessToken": at2}))

	// reuse is logged as a warning, naming the session, without tokens
	logs := p.Logs()
	if !strings.Contains(logs, `"refresh token reused; session revoked"`) || !strings.Contains(logs, sid) {
		t.Fatalf("no reuse warning in logs:\n%s", logs)
	}
	for _, tok := range []string{at1, rt1, at2, rt2, e2eSecret, e2ePassword} {
		if strings.Contains(logs, tok) {
			t.Fatalf("a token, secret or password appears in the logs")
		}
	}

	// a fresh login still works: only that session was revoked
	wantStatus(t, "new session", p.private(p.login(t).str("accessToken")), 200)
}

func TestE2ELoginByEmailReauthAndLogout(t *testing.T) {
	p := startE2E(t, "store memory")

	byEmail := p.do("POST", "/authentication", map[string]string{"strategy": "local", "email": "alice@example.com", "password": e2ePassword})
	wantStatus(t, "login by email", byEmail, http.StatusCreated)
	at := byEmail.str("accessToken")

	// Feathers reAuthenticate: the same token back with payload and user
	re := p.do("POST", "/authentication", map[string]string{"strategy": "jwt", "accessToken": at})
	wantStatus(t, "jwt strategy", re, http.StatusCreated)
	if re.str("accessToken") != at || re.str("authentication.strategy") != "jwt" || re.str("user.id") != "alice" {
		t.Fatalf("jwt strategy answer: %s", re.Raw)
	}

	// logout ends that session only
	other := p.login(t)
	del := p.do("DELETE", "/authentication", nil, "Authorization", "Bearer "+at)
	wantStatus(t, "logout", del, http.StatusOK)
	wantNotAuthenticated(t, "access token after logout", p.private(at))
	wantNotAuthenticated(t, "refresh token after logout", p.refresh(byEmail.str("refreshToken")))
	wantStatus(t, "other session after logout", p.private(other.str("accessToken")), 200)
	wantNotAuthenticated(t, "logout without a token", p.do("DELETE", "/authentication", nil))

	// scope=global ends every session of the user
	third := p.login(t)
	wantStatus(t, "global logout", p.do("DELETE", "/authentication?scope=global", nil, "Authorization", "Bearer "+third.str("accessToken")), 200)
	for _, s := range []apiResponse{other, third} {
		wantNotAuthenticated(t, "access token after global logout", p.private(s.str("accessToken")))
		wantNotAuthenticated(t, "refresh token after global logout", p.refresh(s.str("refreshToken")))
	}
}

// forgeHS256 signs a token with the test secret and key id kid as the
// plugin would, after letting mutate change its header or claims.
func forgeHS256(t *testing.T, kid, typ string, mutate func(h map[string]any, c jwt.MapClaims)) string {
	t.Helper()
	now := time.Now()
	c := jwt.MapClaims{
		"iss": "e2e-issuer", "aud": []string{"e2e-audience"}, "sub": "alice", "sid": "forged-session",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Minute).Unix(), "jti": rand.Text(), "gen": 1,
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, c)
	tok.Header["typ"] = typ
	tok.Header["kid"] = kid
	if mutate != nil {
		mutate(tok.Header, c)
	}
	var key any = []byte(e2eSecret)
	if h := tok.Header; h["alg"] == "none" {
		tok.Method, key = jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestE2ETokenConfusionAndForgery(t *testing.T) {
	p := startE2E(t, "store memory")
	login := p.login(t)
	at, rt := login.str("accessToken"), login.str("refreshToken")
	kid := kidOf(t, at) // the server's id for e2eSecret

	// the controls: a token forged with the real key and correct claims is
	// accepted, so each refusal below is due to its one defect
	wantStatus(t, "well-formed forged access token", p.private(forgeHS256(t, kid, "at+jwt", nil)), 200)
	wantStatus(t, "plain login access token", p.private(at), 200)

	tamper := func(tok string, part int) string {
		parts := strings.Split(tok, ".")
		b := []byte(parts[part])
		i := len(b) / 2
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		parts[part] = string(b)
		return strings.Join(parts, ".")
	}
	otherSub := func(tok string) string {
		parts := strings.Split(tok, ".")
		raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
		parts[1] = base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(raw), `"sub":"alice"`, `"sub":"mallory"`, 1)))
		return strings.Join(parts, ".")
	}
	guarded := map[string]string{
		"refresh token as access token": rt,
		"tampered signature":            tamper(at, 2),
		"tampered payload":              otherSub(at),
		"alg none": forgeHS256(t, kid, "at+jwt", func(h map[string]any, _ jwt.MapClaims) {
			h["alg"] = "none"
		}),
		"wrong iss":     forgeHS256(t, kid, "at+jwt", func(_ map[string]any, c jwt.MapClaims) { c["iss"] = "someone-else" }),
		"wrong aud":     forgeHS256(t, kid, "at+jwt", func(_ map[string]any, c jwt.MapClaims) { c["aud"] = []string{"other-audience"} }),
		"no aud":        forgeHS256(t, kid, "at+jwt", func(_ map[string]any, c jwt.MapClaims) { delete(c, "aud") }),
		"expired":       forgeHS256(t, kid, "at+jwt", func(_ map[string]any, c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Minute).Unix() }),
		"no exp":        forgeHS256(t, kid, "at+jwt", func(_ map[string]any, c jwt.MapClaims) { delete(c, "exp") }),
		"not yet valid": forgeHS256(t, kid, "at+jwt", func(_ map[string]any, c jwt.MapClaims) { c["nbf"] = time.Now().Add(time.Hour).Unix() }),
		"unknown kid":   forgeHS256(t, kid, "at+jwt", func(h map[string]any, _ jwt.MapClaims) { h["kid"] = "hs256-unknown" }),
		"wrong typ":     forgeHS256(t, kid, "at+jwt", func(h map[string]any, _ jwt.MapClaims) { h["typ"] = "JWT" }),
		"no sid":        forgeHS256(t, kid, "at+jwt", func(_ map[string]any, c jwt.MapClaims) { delete(c, "sid") }),
		"garbage":       "not.a.token",
	}
	for name, tok := range guarded {
		t.Run("guard/"+name, func(t *testing.T) {
			res := p.private(tok)
			wantNotAuthenticated(t, name, res)
			if !strings.Contains(res.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Fatalf("no Bearer challenge: %q", res.Header.Get("WWW-Authenticate"))
			}
		})
	}
	if tok := forgeHS256(t, kid, "at+jwt", func(h map[string]any, _ jwt.MapClaims) { h["alg"] = "none" }); !strings.HasSuffix(tok, ".") {
		t.Fatalf("alg none token is not unsigned: %s", tok)
	}

	refreshes := map[string]string{
		"access token as refresh token": at,
		"tampered refresh token":        tamper(rt, 2),
		"alg none refresh token": forgeHS256(t, kid, "rt+jwt", func(h map[string]any, c jwt.MapClaims) {
			h["alg"] = "none"
			c["sid"] = testenv.Claim(t, rt, "sid")
		}),
		"expired refresh token": forgeHS256(t, kid, "rt+jwt", func(_ map[string]any, c jwt.MapClaims) {
			c["sid"] = testenv.Claim(t, rt, "sid")
			c["exp"] = time.Now().Add(-time.Minute).Unix()
		}),
		"wrong aud refresh token": forgeHS256(t, kid, "rt+jwt", func(_ map[string]any, c jwt.MapClaims) {
			c["sid"] = testenv.Claim(t, rt, "sid")
			c["aud"] = "other-audience"
		}),
		"unknown session": forgeHS256(t, kid, "rt+jwt", nil),
		"empty":           "",
	}
	for name, tok := range refreshes {
		t.Run("refresh/"+name, func(t *testing.T) {
			wantNotAuthenticated(t, name, p.refresh(tok))
		})
	}
	// a refresh token is not accepted by the jwt strategy either
	wantNotAuthenticated(t, "refresh token as jwt strategy", p.do("POST", "/authentication", map[string]string{"strategy": "jwt", "accessToken": rt}))

	// none of the refused refreshes spent or revoked the real session
	wantStatus(t, "genuine refresh after the attempts", p.refresh(rt), http.StatusCreated)
}

// TestE2EConcurrentRefresh: 50 simultaneous refreshes of one token leave
// exactly one lineage. Precisely: one of them rotates the session to
// generation 2 and every other is answered with generation-2 tokens
// (reuse_grace); no answer carries another generation. Refreshing with all
// those generation-2 tokens at once again yields only generation 3, and the
// session then goes on from the last one issued. Two live lineages would
// show as two different generations among the answers of one round.
func TestE2EConcurrentRefresh(t *testing.T) {
	p := startE2E(t, "reuse_grace 1m")
	login := p.login(t)
	sid := testenv.Claim(t, login.str("accessToken"), "sid")

	round := func(tokens []string) []string {
		t.Helper()
		answers := make([]apiResponse, len(tokens))
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i, rt := range tokens {
			wg.Add(1)
			go func(i int, rt string) {
				defer wg.Done()
				<-start
				answers[i] = p.refresh(rt)
			}(i, rt)
		}
		close(start)
		wg.Wait()
		var next []string
		gens := map[int]int{}
		for _, a := range answers {
			if a.Status != http.StatusCreated {
				t.Fatalf("a concurrent refresh failed: %d %s", a.Status, a.Raw)
			}
			rt := a.str("refreshToken")
			if testenv.Claim(t, rt, "sid") != sid {
				t.Fatalf("refresh answered for another session")
			}
			gens[genOf(t, rt)]++
			next = append(next, rt)
		}
		if len(gens) != 1 {
			t.Fatalf("two lineages: generations among the answers: %v", gens)
		}
		return next
	}

	tokens := make([]string, 50)
	for i := range tokens {
		tokens[i] = login.str("refreshToken")
	}
	gen2 := round(tokens)
	if g := genOf(t, gen2[0]); g != 2 {
		t.Fatalf("after the first round: generation %d, want 2", g)
	}
	gen3 := round(gen2)
	if g := genOf(t, gen3[0]); g != 3 {
		t.Fatalf("after the second round: generation %d, want 3", g)
	}
	// the lineage goes on from the newest token
	next := p.refresh(gen3[len(gen3)-1])
	wantStatus(t, "refresh after the races", next, http.StatusCreated)
	if g := genOf(t, next.str("refreshToken")); g != 4 {
		t.Fatalf("generation %d, want 4", g)
	}
}

// TestE2ESessionsSurviveRestartAndReload: with the default bolt store,
// sessions and revocations outlive a restart of Caddy and a `caddy reload`
// with a changed config.
func TestE2ESessionsSurviveRestartAndReload(t *testing.T) {
	p := startE2E(t, "")
	kept := p.login(t)
	revoked := p.login(t)
	wantStatus(t, "logout", p.do("DELETE", "/authentication", nil, "Authorization", "Bearer "+revoked.str("accessToken")), 200)

	p.restart()
	wantStatus(t, "access token after restart", p.private(kept.str("accessToken")), 200)
	wantNotAuthenticated(t, "logged-out access token after restart", p.private(revoked.str("accessToken")))
	wantNotAuthenticated(t, "logged-out refresh token after restart", p.refresh(revoked.str("refreshToken")))
	afterRestart := p.refresh(kept.str("refreshToken"))
	wantStatus(t, "refresh after restart", afterRestart, http.StatusCreated)
	if g := genOf(t, afterRestart.str("refreshToken")); g != 2 {
		t.Fatalf("generation after restart: %d", g)
	}

	// a changed config: another lifetime and an extra route
	p.reload("", e2eSite(t, "access_ttl 5m")+"\n\trespond /reloaded \"reloaded\" 200\n")
	if res := p.do("GET", "/reloaded", nil); res.Raw != "reloaded" {
		t.Fatalf("the reload did not take effect: %d %s", res.Status, res.Raw)
	}
	wantStatus(t, "access token after reload", p.private(afterRestart.str("accessToken")), 200)
	wantNotAuthenticated(t, "logged-out access token after reload", p.private(revoked.str("accessToken")))
	afterReload := p.refresh(afterRestart.str("refreshToken"))
	wantStatus(t, "refresh after reload", afterReload, http.StatusCreated)
	if g := genOf(t, afterReload.str("refreshToken")); g != 3 {
		t.Fatalf("generation after reload: %d", g)
	}
	_, c := testenv.JWTParts(t, afterReload.str("accessToken"))
	if exp, iat := c["exp"].(float64), c["iat"].(float64); exp-iat != 300 {
		t.Fatalf("the reloaded access_ttl is not used: exp-iat = %v", exp-iat)
	}
	// the generation spent before the restart is still recognised as reuse
	reuse := p.refresh(kept.str("refreshToken"))
	wantNotAuthenticated(t, "generation 1 after restart and reload", reuse)
	if !strings.Contains(reuse.Raw, "refresh_token_reused") {
		t.Fatalf("not detected as reuse: %s", reuse.Raw)
	}
}

func TestE2EBadInput(t *testing.T) {
	p := startE2E(t, "store memory")
	post := func(contentType, body string) apiResponse {
		return p.do("POST", "/authentication", body, "Content-Type", contentType)
	}

	res := p.do("POST", "/authentication", `{"strategy":"local","username":`)
	wantStatus(t, "malformed JSON", res, http.StatusBadRequest)
	if res.str("name") != "BadRequest" {
		t.Fatalf("not a Feathers BadRequest: %s", res.Raw)
	}
	wantStatus(t, "trailing data", p.do("POST", "/authentication", `{"strategy":"local"} {}`), http.StatusBadRequest)
	wantStatus(t, "a JSON array", p.do("POST", "/authentication", `[]`), http.StatusBadRequest)
	wantStatus(t, "a number for a string", p.do("POST", "/authentication", `{"strategy":"local","password":5}`), http.StatusBadRequest)

	big := `{"strategy":"local","username":"alice","password":"` + strings.Repeat("a", 100<<10) + `"}`
	res = p.do("POST", "/authentication", big)
	wantStatus(t, "100 KiB body", res, http.StatusRequestEntityTooLarge)
	if res.str("name") != "PayloadTooLarge" {
		t.Fatalf("413 is not Feathers-shaped: %s", res.Raw)
	}

	wantNotAuthenticated(t, "unknown strategy", p.do("POST", "/authentication", map[string]string{"strategy": "oauth", "username": "alice", "password": e2ePassword}))
	wantNotAuthenticated(t, "no strategy", p.do("POST", "/authentication", `{}`))

	wrong := p.do("POST", "/authentication", map[string]string{"strategy": "local", "username": "alice", "password": "wrong"})
	missing := p.do("POST", "/authentication", map[string]string{"strategy": "local", "username": "alice"})
	unknown := p.do("POST", "/authentication", map[string]string{"strategy": "local", "username": "nobody", "password": e2ePassword})
	wantNotAuthenticated(t, "missing password", missing)
	wantNotAuthenticated(t, "wrong password", wrong)
	wantNotAuthenticated(t, "unknown user", unknown)
	if missing.Raw != wrong.Raw || unknown.Raw != wrong.Raw {
		t.Fatalf("login failures differ:\n%s\n%s\n%s", missing.Raw, wrong.Raw, unknown.Raw)
	}

	res = post("text/plain", `{"strategy":"local","username":"alice","password":"x"}`)
	wantStatus(t, "text/plain", res, http.StatusUnsupportedMediaType)
	if res.str("name") != "UnsupportedMediaType" {
		t.Fatalf("415 is not Feathers-shaped: %s", res.Raw)
	}
	wantStatus(t, "JSON with a charset", post("application/json; charset=utf-8", `{"strategy":"local","username":"alice","password":"`+e2ePassword+`"}`), http.StatusCreated)

	wantStatus(t, "PUT on the endpoint", p.do("PUT", "/authentication", `{}`), http.StatusMethodNotAllowed)
	wantStatus(t, "unknown sub-path", p.do("POST", "/authentication/nope", `{}`), http.StatusNotFound)
}

// TestE2EExampleSite runs the demo's site block (examples/Caddyfile) in
// the harness: the README's demo user and password log in, the public
// page is public and the private area is guarded.
func TestE2EExampleSite(t *testing.T) {
	data, err := os.ReadFile("../examples/Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(data)
	start := strings.Index(cfg, "http://localhost:8080 {")
	end := strings.LastIndex(cfg, "}")
	if start < 0 || end < start {
		t.Fatal("examples/Caddyfile has no http://localhost:8080 site block")
	}
	body := cfg[start+len("http://localhost:8080 {") : end]
	// the harness chooses the address and the working directory
	body = strings.Replace(body, "bind 127.0.0.1", "", 1)
	site, err := filepath.Abs("../examples/site")
	if err != nil {
		t.Fatal(err)
	}
	body = strings.Replace(body, "root * examples/site", "root * "+site, 1)
	p := startCaddy(t, "", body, caddyOptions{Env: []string{"TOKEN_AUTH_SECRET=" + e2eSecret}})

	if res := p.do("GET", "/", nil); res.Status != 200 || !strings.Contains(res.Raw, "demo-password") {
		t.Fatalf("public page: %d", res.Status)
	}
	wantNotAuthenticated(t, "private without a token", p.do("GET", "/private/", nil))
	login := p.do("POST", "/authentication", map[string]string{"strategy": "local", "username": "demo", "password": "demo-password"})
	wantStatus(t, "demo login", login, http.StatusCreated)
	at := login.str("accessToken")
	if res := p.private(at); res.Status != 404 {
		t.Fatalf("a missing private file with a token: %d", res.Status)
	}
	if res := p.do("GET", "/private/", nil, "Authorization", "Bearer "+at); res.Status != 200 || !strings.Contains(res.Raw, "Members' area") {
		t.Fatalf("private page with a token: %d %s", res.Status, res.Raw)
	}
	who := p.do("GET", "/private/whoami", nil, "Authorization", "Bearer "+at)
	if who.Status != 200 || who.str("id") != "demo" || who.str("email") != "demo@example.com" || who.str("roles") != "reader" {
		t.Fatalf("whoami: %d %s", who.Status, who.Raw)
	}
	wantStatus(t, "demo login by email", p.do("POST", "/authentication", map[string]string{"strategy": "local", "email": "demo@example.com", "password": "demo-password"}), http.StatusCreated)
}
