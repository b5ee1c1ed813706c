package tokenauth

import "strings"

// placeholder is one `{http.auth.user.*}` placeholder with its value
// already boxed, so that setting it on a request allocates nothing.
type placeholder struct {
	name  string
	value any
}

// identityPlaceholders returns the placeholders an accepted token sets:
// computed once per verified token (see verifyAccessCached) and reused on
// every request that carries it.
func (c *accessClaims) identityPlaceholders() []placeholder {
	if c.vars != nil {
		return c.vars
	}
	return buildIdentityPlaceholders(c)
}

func buildIdentityPlaceholders(c *accessClaims) []placeholder {
	vars := make([]placeholder, 0, 6+len(c.Extra))
	vars = append(vars,
		placeholder{"http.auth.user.id", c.Subject},
		placeholder{"http.auth.user.sid", c.SID},
		placeholder{"http.auth.user.email", c.Email},
		placeholder{"http.auth.user.name", c.Name},
		placeholder{"http.auth.user.roles", strings.Join(c.Roles, ",")},
		placeholder{"http.auth.user.cnf_jkt", c.boundKey()}, // the DPoP key's thumbprint, "" for bearer tokens
	)
	for k, v := range c.Extra {
		vars = append(vars, placeholder{"http.auth.user." + k, claimString(v)})
	}
	return vars
}
