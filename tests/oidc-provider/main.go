// Command oidc-provider is a real OpenID provider for caddy-token-auth's
// end-to-end tests: the certified OP of github.com/zitadel/oidc
// (pkg/op) with the library's example in-memory storage and login page,
// listening on 127.0.0.1.
//
// Beyond the library's example it adds what the tests need:
//   - a `sid` claim in ID tokens (the provider's session id, here the
//     authorization request's id), as providers supporting back-channel
//     logout send it;
//   - POST /test/backchannel-logout?user=<id>: the provider signs a
//     logout_token (OIDC Back-Channel Logout 1.0) with its own key for that
//     user's last session, delivers it to the relying party's
//     back-channel logout URI as a real provider would, and answers
//     {"status":<RP's status>,"logout_token":"<jwt>"} so a test can replay
//     it. The library advertises back-channel logout but does not send it.
//
// Usage:
//
//	oidc-provider -port 9998 -users users.json -client-id web -client-secret secret \
//	    -redirect http://127.0.0.1:8080/authentication/idp/test/callback \
//	    -backchannel http://127.0.0.1:8080/authentication/idp/test/backchannel-logout
//
// users.json is the example storage's format: {"<id>":{"ID":..,"Username":..,
// "Password":..,"Email":..,"EmailVerified":true,..}}.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/uuid"
	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

func main() {
	port := flag.Int("port", 9998, "port to listen on (127.0.0.1)")
	usersFile := flag.String("users", "", "users JSON file (the example storage's format)")
	clientID := flag.String("client-id", "web", "the relying party's client_id")
	clientSecret := flag.String("client-secret", "secret", "the relying party's client_secret")
	redirects := flag.String("redirect", "", "comma-separated redirect URIs of the client")
	backchannel := flag.String("backchannel", "", "the client's back-channel logout URI")
	flag.Parse()

	users, err := storage.StoreFromFile(*usersFile)
	if err != nil {
		log.Fatalf("users file: %v", err)
	}
	issuer := fmt.Sprintf("http://127.0.0.1:%d", *port)
	storage.RegisterClients(storage.WebClient(*clientID, *clientSecret, strings.Split(*redirects, ",")...))
	store := &sessionStorage{Storage: storage.NewStorage(users), lastSID: map[string]string{}}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	router := exampleop.SetupServer(issuer, store, logger, false)

	lo := &logoutSender{store: store, issuer: issuer, clientID: *clientID, target: *backchannel}
	mux := http.NewServeMux()
	mux.Handle("POST /test/backchannel-logout", lo)
	mux.Handle("/", router)

	srv := &http.Server{Addr: fmt.Sprintf("127.0.0.1:%d", *port), Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	logger.Info("listening", "issuer", issuer)
	log.Fatal(srv.ListenAndServe())
}

// sessionStorage is the example storage plus a `sid` claim in ID tokens,
// remembering each user's last one for back-channel logout.
type sessionStorage struct {
	*storage.Storage
	mu      sync.Mutex
	lastSID map[string]string // user id -> sid
}

// SetUserinfoFromRequest is called while an ID token is made: it adds the
// session id of the authorization request.
func (s *sessionStorage) SetUserinfoFromRequest(ctx context.Context, userinfo *oidc.UserInfo, token op.IDTokenRequest, scopes []string) error {
	if err := s.Storage.SetUserinfoFromRequest(ctx, userinfo, token, scopes); err != nil {
		return err
	}
	if ar, ok := token.(op.AuthRequest); ok {
		sid := "sid-" + ar.GetID()
		userinfo.AppendClaims("sid", sid)
		s.mu.Lock()
		s.lastSID[token.GetSubject()] = sid
		s.mu.Unlock()
	}
	return nil
}

func (s *sessionStorage) sidOf(user string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastSID[user]
}

// logoutSender mints and delivers logout tokens.
type logoutSender struct {
	store    *sessionStorage
	issuer   string
	clientID string
	target   string
}

func (l *logoutSender) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	user := r.URL.Query().Get("user")
	sid := l.store.sidOf(user)
	if sid == "" {
		http.Error(w, "no session for that user", http.StatusNotFound)
		return
	}
	token, err := l.mint(r.Context(), user, sid)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	status, err := l.deliver(token)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"status": status, "logout_token": token})
}

// mint signs a logout token with the provider's signing key, typed
// logout+jwt as the spec recommends.
func (l *logoutSender) mint(ctx context.Context, user, sid string) (string, error) {
	key, err := l.store.SigningKey(ctx)
	if err != nil {
		return "", err
	}
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: key.SignatureAlgorithm(), Key: jose.JSONWebKey{Key: key.Key(), KeyID: key.ID()}},
		(&jose.SignerOptions{}).WithType("logout+jwt"))
	if err != nil {
		return "", err
	}
	claims := oidc.NewLogoutTokenClaims(l.issuer, user, oidc.Audience{l.clientID}, time.Now().Add(2*time.Minute), uuid.NewString(), sid, 0)
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

// deliver POSTs the token to the relying party, as the spec says.
func (l *logoutSender) deliver(token string) (int, error) {
	res, err := http.PostForm(l.target, url.Values{"logout_token": {token}})
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, res.Body)
	return res.StatusCode, nil
}
