package tokenauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(adminAPI{})
}

// adminAPI serves session administration on Caddy's admin endpoint:
//
//	GET    /token_auth/<realm>/sessions?user=<id>   a user's sessions
//	DELETE /token_auth/<realm>/sessions?user=<id>   revoke all of them
//	DELETE /token_auth/<realm>/sessions/<sid>       revoke one session
//
// Caddy loads every registered admin.api module with its admin server, so
// nothing needs configuring; the admin endpoint's own access rules apply.
type adminAPI struct {
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (adminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.token_auth",
		New: func() caddy.Module { return new(adminAPI) },
	}
}

// Provision sets up the module.
func (a *adminAPI) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger(a)
	return nil
}

const adminBase = "/token_auth/"

// Routes returns the admin routes.
func (a *adminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: adminBase, Handler: caddy.AdminHandlerFunc(a.serve)}}
}

// adminSession is a session as the admin API shows it: never a token.
// expires is when the session ends, whichever of its absolute and idle
// lifetimes runs out first.
type adminSession struct {
	SID      string `json:"sid"`
	User     string `json:"user"`
	Created  string `json:"created"`
	LastUsed string `json:"last_used"`
	Expires  string `json:"expires"`
	Revoked  bool   `json:"revoked"`
}

// adminSessions shows sessions as the admin API does (and {endpoint}/sessions).
func adminSessions(list []Session) []adminSession {
	out := make([]adminSession, 0, len(list))
	for _, s := range list {
		out = append(out, adminSession{
			SID: s.ID, User: s.User, Revoked: s.Revoked,
			Created:  s.Created.UTC().Format(time.RFC3339),
			LastUsed: s.LastUsed.UTC().Format(time.RFC3339),
			Expires:  s.deadline().UTC().Format(time.RFC3339),
		})
	}
	return out
}

func (a *adminAPI) serve(w http.ResponseWriter, r *http.Request) error {
	// /token_auth/<realm>/sessions[/<sid>], realm and sid path-escaped
	rest := strings.TrimPrefix(r.URL.EscapedPath(), adminBase)
	parts := strings.Split(rest, "/")
	if len(parts) == 2 && parts[1] == "invites" && parts[0] != "" {
		return a.serveInvites(w, r, parts[0]) // passkeys_invite.go
	}
	if len(parts) < 2 || len(parts) > 3 || parts[1] != "sessions" || parts[0] == "" {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("not found; use %s<realm>/sessions", adminBase)}
	}
	realmName, err := url.PathUnescape(parts[0])
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("invalid realm name")}
	}
	sid := ""
	if len(parts) == 3 {
		if sid, err = url.PathUnescape(parts[2]); err != nil || sid == "" {
			return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("invalid session id")}
		}
	}
	rs := lookupRealm(realmName)
	if rs == nil {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no realm %q is configured", realmName)}
	}
	user := r.URL.Query().Get("user")

	switch {
	case r.Method == http.MethodGet && sid == "":
		if user == "" {
			return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("query parameter user is required")}
		}
		list, err := rs.store.ListUser(r.Context(), user)
		if err != nil {
			return storeAPIError(err)
		}
		return writeAdminJSON(w, map[string]any{"sessions": adminSessions(list)})

	case r.Method == http.MethodDelete:
		req := revocation{sid: sid}
		if sid == "" {
			if user == "" {
				return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("name a session (/sessions/<sid>) or a user (?user=<id>)")}
			}
			req = revocation{user: user}
		} else if _, err := rs.store.Get(r.Context(), sid); errors.Is(err, ErrSessionNotFound) {
			return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no session %q in realm %q", sid, realmName)}
		} else if err != nil {
			return storeAPIError(err)
		}
		ids, err := rs.revoke(r.Context(), req)
		if err != nil {
			return storeAPIError(err)
		}
		if sid != "" {
			ids = []string{sid}
		}
		a.logger.Info("sessions revoked through the admin API",
			zap.String("realm", realmName), zap.String("user", user), zap.Strings("sids", ids))
		return writeAdminJSON(w, map[string]any{"revoked": ids})

	default:
		w.Header().Set("Allow", "GET, DELETE")
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed", r.Method)}
	}
}

// storeAPIError answers a store failure: 503 while the store is down.
func storeAPIError(err error) error {
	if errors.Is(err, ErrStoreUnavailable) {
		return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: err}
	}
	return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
}

func writeAdminJSON(w http.ResponseWriter, body any) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	return json.NewEncoder(w).Encode(body)
}

// Interface guards
var (
	_ caddy.AdminRouter = (*adminAPI)(nil)
	_ caddy.Provisioner = (*adminAPI)(nil)
)
