package tokenauth

import (
	"context"
	"fmt"

	"go.uber.org/zap"
)

// The bound on a user's live sessions (max_sessions): a credential holder
// who logs in again and again, or a script that never reuses its session,
// cannot grow the store without end. The store's Create revokes the
// user's oldest live sessions beyond the bound in the same atomic step as
// it saves the new one (store.go, and redis/create.lua for Redis, where
// logins on several instances at once still leave no more than the bound).

// defaultMaxSessions is max_sessions when the config leaves it out: more
// devices and browsers than one person uses, few enough that a flood of
// logins stays small.
const defaultMaxSessions = 100

// maxLiveSessions is the handler's max_sessions with the default filled in.
func (ta *TokenAuth) maxLiveSessions() int {
	if ta.MaxSessions <= 0 {
		return defaultMaxSessions
	}
	return ta.MaxSessions
}

// validateMaxSessions refuses a negative max_sessions (JSON); 0 means the default.
func (ta *TokenAuth) validateMaxSessions() error {
	if ta.MaxSessions < 0 {
		return fmt.Errorf("max_sessions must be a positive whole number (or left out for %d), got %d", defaultMaxSessions, ta.MaxSessions)
	}
	return nil
}

// createSession saves a new session, keeping its user within maxLive live
// sessions. The ones the store revoked to make room go through the one
// revocation path (realmState.revoke): their access tokens are refused
// here at once, and on other instances as the store announces them.
func (rs *realmState) createSession(ctx context.Context, s Session, maxLive int) error {
	evicted, err := rs.store.Create(ctx, s, maxLive)
	if err != nil {
		return err
	}
	for _, sid := range evicted {
		if _, err := rs.revoke(ctx, revocation{sid: sid, alreadyStored: true}); err != nil {
			return err
		}
	}
	if len(evicted) > 0 {
		rs.logger.Info("oldest sessions revoked: the user reached max_sessions",
			zap.String("realm", rs.name), zap.String("user", s.User), zap.Int("max_sessions", maxLive),
			zap.Strings("revoked", evicted), zap.String("sid", s.ID))
	}
	return nil
}
