package tokenauth

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// The revocation feed of the Redis store: every instance learns of the
// revocations any instance makes, at once through pub/sub, and within
// resyncInterval through the revocation stream should pub/sub lose one.

// parseRevocations reads the lines of a published revocation.
func parseRevocations(msg string, add func(sid string, until time.Time)) {
	for _, line := range strings.Split(msg, "\n") {
		sid, ms, ok := strings.Cut(line, " ")
		if !ok || sid == "" {
			continue
		}
		n, err := strconv.ParseInt(ms, 10, 64)
		if err != nil {
			continue
		}
		add(sid, time.UnixMilli(n))
	}
}

// resyncInterval is how often an instance reads the revocation stream,
// catching anything pub/sub lost (a reconnect, a dropped message); with
// pub/sub it bounds how late an instance learns of a revocation.
const resyncInterval = 2 * time.Second

// followRevocations feeds add with every revocation any instance makes, as
// soon as it is published, and re-reads the stream every resyncInterval so
// that a lost message still arrives within a few seconds. It returns when
// stop is closed.
func (r *redisStore) followRevocations(stop <-chan struct{}, add func(sid string, until time.Time)) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { <-stop; cancel() }()

	var wg sync.WaitGroup
	sub := r.client.Subscribe(ctx, r.logKey())
	wg.Add(1)
	go func() {
		defer wg.Done()
		for msg := range sub.Channel(redis.WithChannelHealthCheckInterval(10 * time.Second)) {
			parseRevocations(msg.Payload, add)
		}
	}()

	f := &revocationFollower{store: r, add: add}
	ticker := time.NewTicker(resyncInterval)
	defer ticker.Stop()
	for {
		f.sync(ctx)
		r.noteServing(ctx)
		select {
		case <-ctx.Done():
			_ = sub.Close()
			wg.Wait()
			return
		case <-ticker.C:
		}
	}
}

// noteServing logs which server holds the realm's keys when that changes
// (the first time, and after a failover).
func (r *redisStore) noteServing(ctx context.Context) {
	if r.serving == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, redisIOTimeout)
	defer cancel()
	addr, err := r.serving(ctx)
	if err != nil || addr == r.lastServing {
		return
	}
	if r.lastServing == "" {
		r.logger.Info("session store served by " + addr)
	} else {
		r.logger.Warn("session store now served by "+addr+" (failover)", zap.String("previous", r.lastServing))
	}
	r.lastServing = addr
}

// revocationFollower remembers how far into the revocation stream this
// instance has read.
type revocationFollower struct {
	store    *redisStore
	add      func(string, time.Time)
	lastID   string    // last stream entry read; "" before the first full load
	lastSync time.Time // last successful sync
}

func (f *revocationFollower) sync(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*redisIOTimeout)
	defer cancel()
	if f.lastID == "" || time.Since(f.lastSync) > revocationLogWindow/2 {
		if err := f.full(ctx); err != nil {
			return
		}
	} else if err := f.tail(ctx); err != nil {
		return
	}
	f.lastSync = time.Now()
}

// full reloads the whole revoked set, after noting where the stream is,
// so that nothing revoked in between is missed.
func (f *revocationFollower) full(ctx context.Context) error {
	r := f.store
	last, err := r.client.XRevRangeN(ctx, r.logKey(), "+", "-", 1).Result()
	if err = r.check(err); err != nil {
		return err
	}
	lastID := "0-0"
	if len(last) > 0 {
		lastID = last[0].ID
	}
	entries, err := r.revokedUntil(ctx)
	if err != nil {
		return err
	}
	for sid, until := range entries {
		f.add(sid, until)
	}
	f.lastID = lastID
	return nil
}

// tail reads the stream entries after the last one read.
func (f *revocationFollower) tail(ctx context.Context) error {
	r := f.store
	for {
		msgs, err := r.client.XRangeN(ctx, r.logKey(), "("+f.lastID, "+", 500).Result()
		if err = r.check(err); err != nil {
			return err
		}
		for _, m := range msgs {
			if s, ok := m.Values["r"].(string); ok {
				parseRevocations(s, f.add)
			}
			f.lastID = m.ID
		}
		if len(msgs) < 500 {
			return nil
		}
	}
}
