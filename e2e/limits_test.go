package e2e

import (
	"strings"
	"testing"
)

func TestRequestSizeLimitsEndToEnd(t *testing.T) {
	p := startCaddy(t, "", `token_auth /private/* {
		signing_key hs256 `+strings.Repeat("s", 32)+`
		store memory
	}
	respond "ok"`)

	// Body over 64 KiB: 413, Feathers-shaped.
	r := p.do("POST", "/authentication", `{"strategy":"local","username":"`+strings.Repeat("a", maxBodySize)+`"}`)
	if r.Status != 413 || r.str("name") != "PayloadTooLarge" {
		t.Fatalf("oversized body: %d %s", r.Status, r.Raw)
	}
	// An oversized bearer token, and a huge Authorization header: a plain
	// 401, never a server error.
	for _, h := range []string{"Bearer " + strings.Repeat("a", maxTokenSize+1), "Bearer " + strings.Repeat("a.", 6<<10)} {
		r = p.do("GET", "/private/x", nil, "Authorization", h)
		if r.Status != 401 || !strings.Contains(r.Header.Get("WWW-Authenticate"), "invalid_token") {
			t.Fatalf("%d-byte Authorization: %d %s", len(h), r.Status, r.Raw)
		}
	}
}

func TestHeaderSizeLimitEndToEnd(t *testing.T) {
	// Caddy's own limit (16 KiB by default, `servers { max_header_size }`)
	// answers 431 before the handler runs.
	p := startCaddy(t, "", `token_auth /private/* {
		signing_key hs256 `+strings.Repeat("s", 32)+`
		store memory
	}
	respond "ok"`)
	r := p.do("GET", "/private/x", nil, "Authorization", "Bearer "+strings.Repeat("a", 32<<10))
	if r.Status != 431 {
		t.Fatalf("32 KiB header under the default 16 KiB limit: %d %s", r.Status, r.Raw)
	}
	r = p.do("GET", "/private/x", nil, "Authorization", "Bearer "+strings.Repeat("a", 9<<10))
	if r.Status != 401 {
		t.Fatalf("9 KiB header: %d %s", r.Status, r.Raw)
	}
}
