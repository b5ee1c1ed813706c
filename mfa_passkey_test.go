package tokenauth

import (
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"
)

// mfaLoginAnswer is a JSON login's status and body.
type mfaLoginAnswer struct {
	status int
	body   map[string]any
}

func (a mfaLoginAnswer) data() map[string]any { d, _ := a.body["data"].(map[string]any); return d }

func pkJSON(t *testing.T, ta *TokenAuth, body any, header ...string) mfaLoginAnswer {
	t.Helper()
	data, _ := json.Marshal(body)
	w := pkDo(t, ta, "POST", "/authentication", string(data), header...)
	var out map[string]any
	_ = json.Unmarshal(w.Body.Bytes(), &out)
	return mfaLoginAnswer{w.Code, out}
}

func pkPasswordLogin(t *testing.T, ta *TokenAuth, user string) mfaLoginAnswer {
	return pkJSON(t, ta, map[string]string{"strategy": "local", "username": user, "password": user + "-pw"})
}

// enrolTOTP sets up an authenticator app for the holder of access.
func enrolTOTP(t *testing.T, ta *TokenAuth, access string) {
	t.Helper()
	w := pkDo(t, ta, "POST", "/authentication/mfa/totp/setup", "{}", bearer(access)...)
	var setup struct{ Secret string }
	if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &setup) != nil {
		t.Fatalf("totp setup: %d %s", w.Code, w.Body)
	}
	code, err := totp.GenerateCodeCustom(setup.Secret, time.Now(), totpOpts)
	if err != nil {
		t.Fatal(err)
	}
	if w := pkDo(t, ta, "POST", "/authentication/mfa/totp/confirm", `{"code":"`+code+`"}`, bearer(access)...); w.Code != http.StatusCreated {
		t.Fatalf("totp confirm: %d %s", w.Code, w.Body)
	}
}

// TestPasswordLoginAsksForPasskeyUnderRequireMFA: where the directive has
// `require mfa`, a password login of a user with a passkey answers 401
// mfa_required with an mfa_token, methods ["passkey"] (["totp","passkey"]
// with an authenticator app too) and no tokens; the user's own passkey,
// with user verification, completes it once (amr pwd hwk mfa, through the
// guard); another user's passkey or one without user verification does
// not, and leaves the mfa_token usable. Without require mfa the password
// alone signs in, as it does for a user without a second factor.
func TestPasswordLoginAsksForPasskeyUnderRequireMFA(t *testing.T) {
	ta, _ := passkeyHandler(t, nil)
	var err error
	if ta.totp, err = newTOTPService("Example", mfaTestKey); err != nil {
		t.Fatal(err)
	}
	alices, bobs := newSoftAuthenticator(t), newSoftAuthenticator(t)
	addPasskey(t, ta, passwordAccess(t, ta, "alice", "alice-pw"), alices, "key")
	bobAccess := passwordAccess(t, ta, "bob", "bob-pw")
	addPasskey(t, ta, bobAccess, bobs, "bob's key")

	if a := pkPasswordLogin(t, ta, "alice"); a.status != http.StatusCreated || a.body["accessToken"] == nil {
		t.Fatalf("without require mfa, a passkey user's password: %d %v", a.status, a.body)
	}
	ta.RequireMFA = true
	enrolTOTP(t, ta, bobAccess)
	a := pkPasswordLogin(t, ta, "alice")
	token, _ := a.data()["mfa_token"].(string)
	if a.status != http.StatusUnauthorized || a.data()["reason"] != "mfa_required" || token == "" ||
		!slices.Equal(toStrings(a.data()["methods"]), []string{"passkey"}) || a.body["accessToken"] != nil || a.body["refreshToken"] != nil {
		t.Fatalf("require mfa, password of a passkey user: %d %v", a.status, a.body)
	}
	if b := pkPasswordLogin(t, ta, "bob"); !slices.Equal(toStrings(b.data()["methods"]), []string{"totp", "passkey"}) {
		t.Errorf("a user with an app and a passkey: %d %v", b.status, b.body)
	}
	complete := func(a *softAuthenticator, token string) mfaLoginAnswer {
		return pkJSON(t, ta, map[string]any{"strategy": "passkey", "mfa_token": token, "credential": a.sign(loginOptions(t, ta), pkSite).json()})
	}
	if c := complete(bobs, token); c.status != http.StatusUnauthorized || c.body["message"] != "Invalid login" {
		t.Errorf("another user's passkey: %d %v", c.status, c.body)
	}
	alices.verifyUser = false
	if c := complete(alices, token); c.status != http.StatusUnauthorized || c.body["message"] != "Invalid login" {
		t.Errorf("a passkey without user verification: %d %v", c.status, c.body)
	}
	alices.verifyUser = true
	c := complete(alices, token)
	access, _ := c.body["accessToken"].(string)
	if c.status != http.StatusCreated || access == "" {
		t.Fatalf("the user's passkey after the password: %d %v", c.status, c.body)
	}
	if amr := accessClaimsOf(t, ta, access).AMR; !reflect.DeepEqual(amr, []string{"pwd", "hwk", "mfa"}) {
		t.Errorf("amr %v", amr)
	}
	if w := pkDo(t, ta, "GET", "/admin/", "", bearer(access)...); w.Code != http.StatusTeapot {
		t.Errorf("guarded request under require mfa: %d %s", w.Code, w.Body)
	}
	if c := complete(alices, token); c.status != http.StatusUnauthorized || c.body["accessToken"] != nil {
		t.Errorf("the spent mfa_token again: %d %v", c.status, c.body)
	}
	// a user with no second factor: the password alone (the guard then asks for one)
	if c := pkPasswordLogin(t, ta, "carol"); c.status != http.StatusUnauthorized || c.data() != nil {
		t.Errorf("a passkey-only user's (no) password: %d %v", c.status, c.body)
	}
}

// TestCodePageOffersPasskey: the form login of a passkey user under
// require mfa goes to the code page, which shows the "Use a passkey"
// button (and no code form without an app); the button's post completes
// the login and lands on the redirect; a refused passkey comes back to
// the code page saying so.
func TestCodePageOffersPasskey(t *testing.T) {
	ta, _ := passkeyHandler(t, nil)
	alices, bobs := newSoftAuthenticator(t), newSoftAuthenticator(t)
	addPasskey(t, ta, passwordAccess(t, ta, "alice", "alice-pw"), alices, "key")
	addPasskey(t, ta, passwordAccess(t, ta, "bob", "bob-pw"), bobs, "key")
	ta.RequireMFA = true
	form := func(path string, values url.Values, cookies ...*http.Cookie) *http.Response {
		h := []string{"Content-Type", "application/x-www-form-urlencoded", "Origin", pkSite, "Accept", "text/html"}
		for _, c := range cookies {
			h = append(h, "Cookie", c.String())
		}
		return pkDo(t, ta, "POST", path, values.Encode(), h...).Result()
	}
	res := form("/authentication", url.Values{"username": {"alice"}, "password": {"alice-pw"}, "redirect": {"/admin/"}})
	var mfaCookie *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == mfaCookieName {
			mfaCookie = c
		}
	}
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/authentication/mfa?redirect=%2Fadmin%2F" || mfaCookie == nil {
		t.Fatalf("form login: %d %v", res.StatusCode, res.Header)
	}
	w := pkDo(t, ta, "GET", "/authentication/mfa?redirect=%2Fadmin%2F", "", "Cookie", mfaCookie.String())
	body := w.Body.String()
	if w.Code != http.StatusOK || !strings.Contains(body, `id="passkey-step-up" data-action="/authentication/mfa"`) || !strings.Contains(body, ">Use a passkey</button>") ||
		!strings.Contains(body, `src="/authentication/passkeys.js"`) || strings.Contains(body, `name="code"`) {
		t.Fatalf("code page: %d %s", w.Code, body)
	}
	post := func(a *softAuthenticator) *http.Response {
		return form("/authentication/mfa", url.Values{"credential": {string(a.sign(loginOptions(t, ta), pkSite).json())}, "redirect": {"/admin/"}}, mfaCookie)
	}
	if res := post(bobs); res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/authentication/mfa?error=passkey_failed&redirect=%2Fadmin%2F" {
		t.Errorf("another user's passkey: %d %v", res.StatusCode, res.Header)
	}
	res = post(alices)
	var access string
	for _, c := range res.Cookies() {
		if c.Name == accessCookieName {
			access = c.Value
		}
	}
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/admin/" || access == "" {
		t.Fatalf("the user's passkey: %d %v", res.StatusCode, res.Header)
	}
	if amr := accessClaimsOf(t, ta, access).AMR; !reflect.DeepEqual(amr, []string{"pwd", "hwk", "mfa"}) {
		t.Errorf("amr %v", amr)
	}
}
