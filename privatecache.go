package tokenauth

import (
	"io"
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// privateCacheControl is what a guarded answer carries when the handler
// behind the guard set no Cache-Control of its own: no shared cache may
// store it (it was let through for one person's token), and a browser
// must ask again before reusing it (so after logout, going back to a
// private page shows the login page, not a copy). Without it, a page
// with Last-Modified (file_server) is reused heuristically for a tenth of
// its age.
const privateCacheControl = "private, no-cache"

// privateAnswer wraps the writer of a request the guard let through: when
// the answer's header is written, it gets privateCacheControl unless it
// has a Cache-Control already (a reverse_proxy upstream's, a handler's,
// an operator's `header`). An operator's deferred `header` (`header
// >Cache-Control ...`) wraps outside the guard and still wins.
//
// The wrapper is embedded by value, and holds the header's value too: one
// allocation per guarded request.
type privateAnswer struct {
	caddyhttp.ResponseWriterWrapper
	wroteHeader  bool
	cacheControl [1]string // the header's values, when the guard sets it
}

func newPrivateAnswer(w http.ResponseWriter) *privateAnswer {
	return &privateAnswer{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w}}
}

func (p *privateAnswer) WriteHeader(status int) {
	if p.wroteHeader {
		p.ResponseWriterWrapper.WriteHeader(status)
		return
	}
	// 1xx answers are informational; the final one comes later
	if status < 100 || status > 199 {
		p.wroteHeader = true
		// h.Get and h.Set, without canonicalizing a canonical name
		if h := p.Header(); len(h["Cache-Control"]) == 0 || h["Cache-Control"][0] == "" {
			p.cacheControl[0] = privateCacheControl
			h["Cache-Control"] = p.cacheControl[:]
		}
	}
	p.ResponseWriterWrapper.WriteHeader(status)
}

// Write and ReadFrom send the header first, as net/http would, so that it
// passes through WriteHeader above.
func (p *privateAnswer) Write(b []byte) (int, error) {
	if !p.wroteHeader {
		p.WriteHeader(http.StatusOK)
	}
	return p.ResponseWriterWrapper.Write(b)
}

func (p *privateAnswer) ReadFrom(r io.Reader) (int64, error) {
	if !p.wroteHeader {
		p.WriteHeader(http.StatusOK)
	}
	return p.ResponseWriterWrapper.ReadFrom(r)
}

// Interface guards
var (
	_ http.ResponseWriter = (*privateAnswer)(nil)
	_ io.ReaderFrom       = (*privateAnswer)(nil)
)
