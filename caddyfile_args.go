package tokenauth

import (
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// The argument readers every Caddyfile option shares.

// oneArg reads exactly one argument into dst.
func oneArg(d *caddyfile.Dispenser, dst *string) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	*dst = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

// intArg reads exactly one argument as a whole number of at least min;
// ok is false (with raw, the argument as written) when it is not one.
func intArg(d *caddyfile.Dispenser, min int) (n int, raw string, ok bool, err error) {
	if err := oneArg(d, &raw); err != nil {
		return 0, "", false, err
	}
	n, convErr := strconv.Atoi(raw)
	return n, raw, convErr == nil && n >= min, nil
}

// positiveIntArg reads `<option> <n>` with n a whole number of at least 1.
func positiveIntArg(d *caddyfile.Dispenser, dst *int) error {
	option := d.Val()
	n, raw, ok, err := intArg(d, 1)
	if err != nil {
		return err
	}
	if !ok {
		return d.Errf("%s must be a positive whole number, got %q", option, raw)
	}
	*dst = n
	return nil
}

func durationArg(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	option := d.Val()
	var s string
	if err := oneArg(d, &s); err != nil {
		return err
	}
	dur, err := caddy.ParseDuration(s)
	if err != nil {
		return d.Errf("%s: invalid duration %q: %v", option, s, err)
	}
	if dur <= 0 {
		return d.Errf("%s must be positive", option)
	}
	*dst = caddy.Duration(dur)
	return nil
}

func knownKeyAlgorithm(alg string) bool {
	switch strings.ToLower(alg) {
	case "hs256", "ed25519", "es256", "rs256":
		return true
	}
	return false
}
