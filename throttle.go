package tokenauth

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// Defaults of the brute-force throttle and of the hashing bound.
const (
	defaultThrottleFailures = 5
	defaultThrottleWindow   = 10 * time.Minute
	defaultThrottleBan      = 10 * time.Minute

	// hashSlotWait is how long a login waits for a free hashing slot
	// before it is answered 503.
	hashSlotWait = 250 * time.Millisecond
	// hashBusyRetry is the Retry-After of that 503.
	hashBusyRetry = time.Second
)

// ThrottleConfig bans logins after repeated failures, per user and per
// client IP. With `store redis` the counts and bans are kept in Redis and
// hold across every instance sharing it (while Redis is down, logins
// answer 503); otherwise they are kept in the process.
type ThrottleConfig struct {
	// Failures within Window that ban a user id or a client IP. Default: 5.
	Failures int `json:"failures,omitempty"`

	// Window in which failures are counted. Default: 10m.
	Window caddy.Duration `json:"window,omitempty"`

	// Ban is how long a banned user id or client IP gets 429, whatever
	// password it sends. Default: 10m.
	Ban caddy.Duration `json:"ban,omitempty"`

	// Off disables throttling (for example behind a proxy that already
	// does it). Not recommended on a public site.
	Off bool `json:"off,omitempty"`
}

// resolved fills the defaults of a possibly absent config.
func (c *ThrottleConfig) resolved() ThrottleConfig {
	var out ThrottleConfig
	if c != nil {
		out = *c
	}
	if out.Failures == 0 {
		out.Failures = defaultThrottleFailures
	}
	setDefault(&out.Window, defaultThrottleWindow)
	setDefault(&out.Ban, defaultThrottleBan)
	return out
}

func (c ThrottleConfig) validate() error {
	if c.Failures < 0 || c.Window < 0 || c.Ban < 0 {
		return errors.New("throttle: failures, window and ban must be positive")
	}
	return nil
}

// failureCounter counts failed logins and keeps bans. A key is what is
// throttled ("user:<id>", "ip:<addr>"); a source is where a failure came
// from, so that a success forgives only the failures it explains. It is
// shared by every handler of a realm and survives config reloads; an
// implementation backed by a shared store makes the throttle hold across
// instances. Durations, not instants, cross the interface so a store may
// keep time by its own clock. The implementations are memoryFailures
// (below) and redisFailures; both pass the same conformance table.
type failureCounter interface {
	// Reserve counts one attempt of key from source as a failure before
	// its password is verified, and returns the failures of key, from all
	// sources, in the current window (which starts at the first failure of
	// key and lasts window), this one included. Unless key is banned or
	// already has limit failures in the window: then it counts nothing and
	// returns how long to wait (the ban's or the window's rest). Checking
	// and counting are one atomic step, so a burst of concurrent attempts
	// gets at most limit verifications.
	Reserve(ctx context.Context, key, source string, window time.Duration, limit int) (n int, wait time.Duration, err error)
	// Release takes back one reserved attempt of key from source whose
	// password was not verified after all.
	Release(ctx context.Context, key, source string) error
	// Forgive forgets key's failures from source.
	Forgive(ctx context.Context, key, source string) error
	// Ban refuses key for d, and forgets its failures.
	Ban(ctx context.Context, key string, d time.Duration) error
	// Banned returns how much longer key is banned, 0 if it is not.
	Banned(ctx context.Context, key string) (time.Duration, error)
}

// memoryFailures is the in-process failureCounter.
type memoryFailures struct {
	mu      sync.Mutex
	now     func() time.Time
	entries map[string]*failureEntry
	max     int // bound on entries: a flood of made-up user names cannot exhaust memory
}

type failureEntry struct {
	windowEnd   time.Time
	bySource    map[string]int
	bannedUntil time.Time
}

// maxFailureEntries bounds the memory counter. When full, expired entries
// are dropped first, then unbanned ones at random.
const maxFailureEntries = 100_000

func newMemoryFailures() *memoryFailures {
	return &memoryFailures{now: time.Now, entries: make(map[string]*failureEntry), max: maxFailureEntries}
}

func (m *memoryFailures) Reserve(_ context.Context, key, source string, window time.Duration, limit int) (int, time.Duration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	e := m.entries[key]
	if e == nil {
		if len(m.entries) >= m.max {
			m.makeRoom(now)
		}
		e = &failureEntry{}
		m.entries[key] = e
	}
	if left := e.bannedUntil.Sub(now); left > 0 {
		return 0, left, nil
	}
	if !now.Before(e.windowEnd) {
		e.windowEnd, e.bySource = now.Add(window), nil
	}
	total := 0
	for _, n := range e.bySource {
		total += n
	}
	if total >= limit {
		return total, e.windowEnd.Sub(now), nil
	}
	if e.bySource == nil {
		e.bySource = make(map[string]int)
	}
	e.bySource[source]++
	return total + 1, 0, nil
}

func (m *memoryFailures) Release(_ context.Context, key, source string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e := m.entries[key]; e != nil && e.bySource[source] > 0 {
		e.bySource[source]--
		if e.bySource[source] == 0 {
			delete(e.bySource, source)
		}
	}
	return nil
}

func (m *memoryFailures) Forgive(_ context.Context, key, source string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e := m.entries[key]; e != nil {
		delete(e.bySource, source)
	}
	return nil
}

func (m *memoryFailures) Ban(_ context.Context, key string, d time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	e := m.entries[key]
	if e == nil {
		e = &failureEntry{}
		m.entries[key] = e
	}
	e.bannedUntil, e.bySource, e.windowEnd = now.Add(d), nil, time.Time{}
	return nil
}

func (m *memoryFailures) Banned(_ context.Context, key string) (time.Duration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.entries[key]
	if e == nil {
		return 0, nil
	}
	if left := e.bannedUntil.Sub(m.now()); left > 0 {
		return left, nil
	}
	return 0, nil
}

// prune drops entries whose window and ban are both over.
func (m *memoryFailures) prune(now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pruneLocked(now)
}

func (m *memoryFailures) pruneLocked(now time.Time) {
	for k, e := range m.entries {
		if !now.Before(e.windowEnd) && !now.Before(e.bannedUntil) {
			delete(m.entries, k)
		}
	}
}

func (m *memoryFailures) makeRoom(now time.Time) {
	m.pruneLocked(now)
	for k, e := range m.entries { // random order
		if len(m.entries) < m.max {
			return
		}
		if !now.Before(e.bannedUntil) {
			delete(m.entries, k)
		}
	}
}

// hashSlots bounds concurrent password verifications, so a login flood
// takes at most that many CPUs and guarded requests keep flowing.
type hashSlots chan struct{}

// defaultHashSlots is half the CPUs, at least one: with every CPU allowed to
// hash, a login flood takes every CPU and the guarded site gets what the
// scheduler leaves (a fifth to two fifths of its throughput on two CPUs in
// BENCHMARKS.md); with half, it keeps about half.
func defaultHashSlots() int {
	return max(1, runtime.NumCPU()/2)
}

func newHashSlots(n int) hashSlots {
	return make(hashSlots, hashSlotCount(n))
}

// acquire takes a slot, waiting at most hashSlotWait. A nil hashSlots
// (a handler built without Provision) does not bound anything.
func (s hashSlots) acquire(ctx context.Context) bool {
	if s == nil {
		return true
	}
	select {
	case s <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(hashSlotWait)
	defer t.Stop()
	select {
	case s <- struct{}{}:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}

func (s hashSlots) release() {
	if s != nil {
		<-s
	}
}

func errTooManyFailures(retry time.Duration) *apiError {
	e := newAPIError(http.StatusTooManyRequests, "Too many failed logins, try again later")
	e.retryAfter = retry
	return e
}

func errHashingBusy() *apiError {
	e := newAPIError(http.StatusServiceUnavailable, "Too many logins at once, try again shortly")
	e.retryAfter = hashBusyRetry
	return e
}

// throttleKeys names the counters a login attempt is charged to: its user
// (by id when the account exists, else by the login name as typed, so
// unknown accounts are throttled alike) and its client IP.
func (ta *TokenAuth) throttleKeys(r *http.Request, login string, isEmail bool) (userKey, ipKey, ip string) {
	ip = clientIP(r)
	if u := ta.users.users().find(login, isEmail); u != nil {
		userKey = "user:" + u.ID
	} else {
		userKey = "user:" + strings.ToLower(login)
	}
	return userKey, "ip:" + ip, ip
}

// throttleCharge is one counter a login attempt is charged to: key is
// what is throttled, source where the attempt came from.
type throttleCharge struct{ key, source string }

// checkPassword is a password login with throttling and bounded hashing.
// The attempt is charged to its user and its client IP BEFORE its password
// is verified (a reservation): a banned user or IP, or one whose window
// already holds `failures` attempts, is answered 429 without hashing, so a
// burst of concurrent wrong passwords gets at most `failures` verifications
// per window. A login finding no free hashing slot soon is answered 503
// and its reservation taken back. A success forgives the failures it
// explains; a failure keeps its reservation and bans at the limit.
// It returns the user, or nil for a wrong login.
func (ta *TokenAuth) checkPassword(r *http.Request, login, password string, isEmail bool) (*User, error) {
	ctx := r.Context()
	userKey, ipKey, ip := ta.throttleKeys(r, login, isEmail)
	attempt, err := ta.beginAttempt(r, userKey, ipKey, login)
	if err != nil {
		return nil, err
	}
	if !ta.hashSlots.acquire(ctx) {
		ta.logger.Warn("login refused: too many password verifications at once", zap.String("client_ip", ip))
		if err := attempt.cancel(ctx); err != nil {
			return nil, err
		}
		return nil, errHashingBusy()
	}
	user, err := ta.users.authenticate(login, password, isEmail)
	ta.hashSlots.release()
	if err != nil {
		return nil, errors.Join(err, attempt.cancel(ctx))
	}

	// client_ip comes first so a fail2ban filter can anchor on it: the
	// user name is the client's and could imitate other fields.
	if user != nil {
		ta.logger.Debug("password accepted", zap.String("client_ip", ip), zap.String("user", user.ID))
		return user, attempt.succeeded(ctx)
	}
	ta.logger.Info("login failed", zap.String("client_ip", ip), zap.String("realm", ta.Realm), zap.String("user", login))
	return nil, attempt.failed(ctx)
}

// attempt is one guess (a password, a second-factor code) charged to the
// user's and the client IP's failure counters before it is checked, so
// that concurrent guesses cannot all pass a ban check made before any of
// them is counted: the counters' Reserve is the check and the count in one
// atomic step.
type attempt struct {
	ta      *TokenAuth
	ip      string
	charges []throttleCharge
	counts  []int // what each counter holds with this attempt; nil when not throttled
}

// beginAttempt reserves an attempt against userKey and ipKey, or answers
// 429 when either is banned or full; login is the name the client gave,
// for the log.
func (ta *TokenAuth) beginAttempt(r *http.Request, userKey, ipKey, login string) (*attempt, error) {
	ip := clientIP(r)
	a := &attempt{ta: ta, ip: ip, charges: []throttleCharge{{userKey, ip}, {ipKey, userKey}}}
	if !ta.throttled() {
		return a, nil
	}
	counts, err := ta.reserveAttempt(r, a.charges, login)
	if err != nil {
		return nil, err
	}
	a.counts = counts
	return a, nil
}

// cancel takes the reservation back: the guess was never checked (no
// hashing slot, a store fault).
func (a *attempt) cancel(ctx context.Context) error {
	if a.counts == nil {
		return nil
	}
	return a.ta.releaseAttempt(ctx, a.charges)
}

// succeeded forgives only the failures the success explains: this user's
// from this IP (its own reservation with them). Other IPs' failures
// against this user stand.
func (a *attempt) succeeded(ctx context.Context) error {
	if a.counts == nil {
		return nil
	}
	for _, c := range a.charges {
		if err := a.ta.realm.failures.Forgive(ctx, c.key, c.source); err != nil {
			return fmt.Errorf("updating login throttle: %w", err)
		}
	}
	return nil
}

// failed keeps the reservation as a failure and bans a counter that
// reached the limit with it.
func (a *attempt) failed(ctx context.Context) error {
	ta := a.ta
	for i, c := range a.charges {
		if a.counts == nil || a.counts[i] < ta.throttle.Failures {
			continue
		}
		if err := ta.realm.failures.Ban(ctx, c.key, time.Duration(ta.throttle.Ban)); err != nil {
			return fmt.Errorf("updating login throttle: %w", err)
		}
		ta.logger.Warn("login banned", zap.String("client_ip", a.ip), zap.String("key", c.key),
			zap.Int("failures", a.counts[i]), zap.Duration("ban", time.Duration(ta.throttle.Ban)))
	}
	return nil
}

// reserveAttempt charges an attempt to every counter, each atomically, and
// returns their counts. If one refuses (banned, or its window is full),
// the reservations already made are taken back and the answer is 429.
func (ta *TokenAuth) reserveAttempt(r *http.Request, charges []throttleCharge, login string) ([]int, error) {
	ctx := r.Context()
	window := time.Duration(ta.throttle.Window)
	counts := make([]int, 0, len(charges))
	for i, c := range charges {
		n, wait, err := ta.realm.failures.Reserve(ctx, c.key, c.source, window, ta.throttle.Failures)
		if err == nil && wait == 0 {
			counts = append(counts, n)
			continue
		}
		if err != nil {
			err = fmt.Errorf("reading login throttle: %w", err)
		}
		if rerr := ta.releaseAttempt(ctx, charges[:i]); rerr != nil && err == nil {
			err = rerr
		}
		if err != nil {
			return nil, err
		}
		ta.logger.Info("login refused: throttled", zap.String("client_ip", clientIP(r)), zap.String("user", login))
		return nil, errTooManyFailures(wait)
	}
	return counts, nil
}

// releaseAttempt takes back the reservations of an attempt whose password
// was not verified.
func (ta *TokenAuth) releaseAttempt(ctx context.Context, charges []throttleCharge) error {
	for _, c := range charges {
		if err := ta.realm.failures.Release(ctx, c.key, c.source); err != nil {
			return fmt.Errorf("updating login throttle: %w", err)
		}
	}
	return nil
}

// throttled says whether failed logins are counted. A handler built
// without Provision (as some unit tests do) has a zero config and no
// counter: it is not throttled.
func (ta *TokenAuth) throttled() bool {
	return !ta.throttle.Off && ta.throttle.Failures > 0 && ta.realm != nil && ta.realm.failures != nil
}

// refuseBanned answers 429 while any of keys is banned; login is the
// name the client gave, for the log.
func (ta *TokenAuth) refuseBanned(ctx context.Context, ip, login string, keys ...string) error {
	if !ta.throttled() {
		return nil
	}
	var longest time.Duration
	for _, key := range keys {
		left, err := ta.realm.failures.Banned(ctx, key)
		if err != nil {
			return fmt.Errorf("reading login throttle: %w", err)
		}
		longest = max(longest, left)
	}
	if longest > 0 {
		ta.logger.Info("login refused: throttled", zap.String("client_ip", ip), zap.String("user", login))
		return errTooManyFailures(longest)
	}
	return nil
}

// countFailure records one failed login of key from source after the
// fact (a sign-in with nothing to reserve before, such as a passkey), and
// bans key when it reaches the limit. A key banned already counts nothing.
func (ta *TokenAuth) countFailure(ctx context.Context, key, source, ip string) error {
	n, wait, err := ta.realm.failures.Reserve(ctx, key, source, time.Duration(ta.throttle.Window), math.MaxInt32)
	if err != nil {
		return fmt.Errorf("updating login throttle: %w", err)
	}
	if wait == 0 && n >= ta.throttle.Failures {
		if err := ta.realm.failures.Ban(ctx, key, time.Duration(ta.throttle.Ban)); err != nil {
			return fmt.Errorf("updating login throttle: %w", err)
		}
		ta.logger.Warn("login banned", zap.String("client_ip", ip), zap.String("key", key),
			zap.Int("failures", n), zap.Duration("ban", time.Duration(ta.throttle.Ban)))
	}
	return nil
}

// checkIPBan refuses (429) a sign-in without a user name (a passkey)
// from a banned client IP.
func (ta *TokenAuth) checkIPBan(ctx context.Context, ip string) error {
	return ta.refuseBanned(ctx, ip, "", "ip:"+ip)
}

// countIPFailure counts a failed sign-in without a user name against the
// client IP; method is the failure's source.
func (ta *TokenAuth) countIPFailure(ctx context.Context, ip, method string) error {
	if !ta.throttled() {
		return nil
	}
	return ta.countFailure(ctx, "ip:"+ip, method, ip)
}
