package tokenauth

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/tokenauth/caddy-token-auth/internal/testenv"
)

// guardedAnswer passes a request with the access token through the guard
// to next, and returns the answer.
func guardedAnswer(t *testing.T, ta *TokenAuth, access string, next caddyhttp.HandlerFunc) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest("GET", "/private/page", nil)
	r.Header.Set("Authorization", "Bearer "+access)
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
	w := httptest.NewRecorder()
	if err := ta.ServeHTTP(w, r, next); err != nil {
		t.Fatal(err)
	}
	return w
}

// TestGuardedAnswerIsPrivate: an answer the guard let through carries
// `Cache-Control: private, no-cache` however its handler writes it, unless
// the handler set a Cache-Control of its own.
func TestGuardedAnswerIsPrivate(t *testing.T) {
	ta := hs256Config("private-cache-test", User{ID: "alice", Password: testenv.Hash(t, "a")})
	provisionInProcess(t, ta)
	access, _ := loginInProcess(t, ta, "alice", "a")

	for name, tc := range map[string]struct {
		next caddyhttp.HandlerFunc
		want string
	}{
		"WriteHeader": {func(w http.ResponseWriter, _ *http.Request) error {
			w.WriteHeader(http.StatusNotModified)
			return nil
		}, privateCacheControl},
		"Write only": {func(w http.ResponseWriter, _ *http.Request) error {
			_, err := w.Write([]byte("page"))
			return err
		}, privateCacheControl},
		"ReadFrom (io.Copy)": {func(w http.ResponseWriter, _ *http.Request) error {
			_, err := io.Copy(w, strings.NewReader("page"))
			return err
		}, privateCacheControl},
		"informational first": {func(w http.ResponseWriter, _ *http.Request) error {
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Set("Cache-Control", "max-age=5")
			w.WriteHeader(http.StatusOK)
			return nil
		}, "max-age=5"},
		"own Cache-Control": {func(w http.ResponseWriter, _ *http.Request) error {
			w.Header().Set("Cache-Control", "public, max-age=60")
			w.WriteHeader(http.StatusOK)
			return nil
		}, "public, max-age=60"},
	} {
		t.Run(name, func(t *testing.T) {
			w := guardedAnswer(t, ta, access, tc.next)
			if got := w.Header().Values("Cache-Control"); len(got) != 1 || got[0] != tc.want {
				t.Fatalf("Cache-Control %q, want %q", got, tc.want)
			}
		})
	}
}

var answerSink http.ResponseWriter

// TestPrivateAnswerAllocatesOnce: wrapping a guarded answer and setting its
// Cache-Control costs one allocation, the wrapper (which holds the value).
func TestPrivateAnswerAllocatesOnce(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates on its own")
	}
	w := &discardWriter{h: make(http.Header)}
	n := testing.AllocsPerRun(100, func() {
		clear(w.h)
		answerSink = newPrivateAnswer(w) // escapes, as when handed to the next handler
		answerSink.WriteHeader(http.StatusOK)
	})
	if got := w.h.Get("Cache-Control"); got != privateCacheControl {
		t.Fatalf("Cache-Control %q, want %q", got, privateCacheControl)
	}
	if n > 1 {
		t.Fatalf("%v allocations per guarded answer, want 1", n)
	}
}
