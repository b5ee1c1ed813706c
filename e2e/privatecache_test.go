package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenauth/caddy-token-auth/internal/testenv"
)

// TestGuardedAnswersNotCachedEndToEnd: through the real Caddy, a guarded
// file_server page (with Last-Modified and ETag, which a browser would
// otherwise reuse heuristically) carries `Cache-Control: private,
// no-cache`; a reverse_proxy upstream's own Cache-Control and an
// operator's `header` are left alone; an unguarded page gets nothing.
func TestGuardedAnswersNotCachedEndToEnd(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=60")
		fmt.Fprint(w, "from upstream")
	}))
	defer upstream.Close()

	site := t.TempDir()
	for _, f := range []string{"private/page.html", "public.html"} {
		path := filepath.Join(site, f)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("<p>"+f+"</p>"), 0o644); err != nil {
			t.Fatal(err)
		}
		old := time.Now().Add(-24 * time.Hour)
		if err := os.Chtimes(path, old, old); err != nil {
			t.Fatal(err)
		}
	}
	p := startCaddy(t, "", fmt.Sprintf(`
	@guarded path /private/* /proxied/* /operator/*
	token_auth @guarded {
		signing_key hs256 %s
		store memory
		user alice %s
	}
	header /operator/* Cache-Control "no-store"
	handle /proxied/* {
		reverse_proxy %s
	}
	handle /operator/* {
		respond "operator's choice"
	}
	handle {
		root * %s
		file_server
	}`, strings.Repeat("s", 32), testenv.Hash(t, "alice-pw"), strings.TrimPrefix(upstream.URL, "http://"), site))

	login := p.do("POST", "/authentication", map[string]string{"strategy": "local", "username": "alice", "password": "alice-pw"})
	if login.Status != http.StatusCreated {
		t.Fatalf("login: %d %s", login.Status, login.Raw)
	}
	bearer := "Bearer " + login.str("accessToken")
	for _, tc := range []struct{ path, want string }{
		{"/private/page.html", "private, no-cache"},
		{"/proxied/x", "public, max-age=60"},
		{"/operator/x", "no-store"},
	} {
		r := p.do("GET", tc.path, nil, "Authorization", bearer)
		if got := r.Header.Values("Cache-Control"); r.Status != http.StatusOK || len(got) != 1 || got[0] != tc.want {
			t.Fatalf("%s: %d Cache-Control %q, want %q (%s)", tc.path, r.Status, got, tc.want, r.Raw)
		}
		if tc.path == "/private/page.html" && (r.Header.Get("Last-Modified") == "" || r.Header.Get("ETag") == "") {
			t.Fatalf("file_server sent no validators: %v", r.Header)
		}
	}
	if r := p.do("GET", "/public.html", nil); r.Status != http.StatusOK || r.Header.Get("Cache-Control") != "" {
		t.Fatalf("unguarded page: %d Cache-Control %q", r.Status, r.Header.Get("Cache-Control"))
	}
}
