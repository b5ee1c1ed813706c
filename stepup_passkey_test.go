package tokenauth

import (
	"context"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The step-up page offers a user's passkey as the missing factor: the
// login ceremony's assertion, with user verification, upgrades the
// one-factor session in place (same id and generation, amr hwk and mfa,
// a new auth_time) and returns to the page; without user verification,
// or with another user's passkey, it does not.
func TestStepUpWithPasskey(t *testing.T) {
	ta, _ := passkeyHandler(t, nil)
	alices, bobs := newSoftAuthenticator(t), newSoftAuthenticator(t)
	access := passwordAccess(t, ta, "alice", "alice-pw")
	addPasskey(t, ta, access, alices, "key")
	addPasskey(t, ta, passwordAccess(t, ta, "bob", "bob-pw"), bobs, "bob's key")
	ta.RequireMFA = true
	if err := ta.Validate(); err != nil {
		t.Fatalf("require mfa with passkeys (no TOTP): %v", err)
	}
	before := accessClaimsOf(t, ta, access)
	session, err := ta.realm.store.Get(context.Background(), before.SID)
	if err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Minute)
	ta.now = func() time.Time { return later }
	cookie := (&http.Cookie{Name: accessCookieName, Value: access}).String()

	w := pkDo(t, ta, "GET", "/authentication/mfa/step-up?redirect=%2Fadmin%2F", "", "Cookie", cookie)
	body := w.Body.String()
	if w.Code != http.StatusOK || !strings.Contains(body, `id="passkey-step-up"`) || !strings.Contains(body, `src="/authentication/passkeys.js"`) ||
		strings.Contains(body, `name="code"`) {
		t.Fatalf("step-up page for a user with a passkey (no TOTP): %d %s", w.Code, body)
	}
	stepUp := func(a *softAuthenticator) *http.Response {
		form := url.Values{"credential": {string(a.sign(loginOptions(t, ta), pkSite).json())}, "redirect": {"/admin/"}}
		return pkDo(t, ta, "POST", "/authentication/mfa/step-up", form.Encode(),
			"Content-Type", "application/x-www-form-urlencoded", "Origin", pkSite, "Cookie", cookie).Result()
	}
	alices.verifyUser = false
	if res := stepUp(alices); res.StatusCode != http.StatusSeeOther || !strings.Contains(res.Header.Get("Location"), "error=passkey_failed") || len(res.Cookies()) != 0 {
		t.Errorf("step-up with a passkey without user verification: %d %v", res.StatusCode, res.Header)
	}
	if res := stepUp(bobs); res.StatusCode != http.StatusSeeOther || !strings.Contains(res.Header.Get("Location"), "error=passkey_failed") || len(res.Cookies()) != 0 {
		t.Errorf("step-up with another user's passkey: %d %v", res.StatusCode, res.Header)
	}
	alices.verifyUser = true
	res := stepUp(alices)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/admin/" {
		t.Fatalf("step-up with a verified passkey: %d %v", res.StatusCode, res.Header)
	}
	var stepped string
	for _, c := range res.Cookies() {
		if c.Name == accessCookieName {
			stepped = c.Value
		}
	}
	c := accessClaimsOf(t, ta, stepped)
	if c.SID != before.SID || !reflect.DeepEqual(c.AMR, []string{"pwd", "hwk", "mfa"}) || !c.AuthTime.Equal(later.Truncate(time.Second)) {
		t.Errorf("stepped-up token: sid %s (want %s) amr %v auth_time %v (want %v)", c.SID, before.SID, c.AMR, c.AuthTime, later.Truncate(time.Second))
	}
	if after, _ := ta.realm.store.Get(context.Background(), before.SID); after.Generation != session.Generation {
		t.Errorf("step-up changed the generation: %d -> %d", session.Generation, after.Generation)
	}
	if w := pkDo(t, ta, "GET", "/admin/", "", bearer(stepped)...); w.Code != http.StatusTeapot {
		t.Errorf("guarded request after the step-up: %d %s", w.Code, w.Body)
	}
	if w := pkDo(t, ta, "GET", "/admin/", "", bearer(access)...); w.Code != http.StatusForbidden {
		t.Errorf("guarded request with the one-factor token: %d %s", w.Code, w.Body)
	}
}
