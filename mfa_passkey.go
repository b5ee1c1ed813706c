package tokenauth

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
)

// A passkey as the second step of a password login: where `require mfa`
// is on, a password login of a user with a passkey answers mfa_required
// with "passkey" among the methods (secondFactorMethods, mfa.go), and the
// login is completed by
//
//	POST {endpoint} {"strategy":"passkey","mfa_token":"...","credential":<AuthenticationResponseJSON>}
//
// (the assertion answering POST {endpoint}/passkeys/login/options), or on
// the code page by its passkey button. The passkey must be the same user's
// and verify its user, as at the step-up page (checkPasskeyFactor). A
// passkey login without an mfa_token is a sign-in of its own (passkeyLogin).

// amrPasswordPasskey is a sign-in with a password and then a passkey.
var amrPasswordPasskey = []string{amrPwd, "hwk", amrMFA}

// completeWithPasskey answers the second step of a password login made
// with a passkey. A refused passkey leaves the mfa_token usable (until it
// expires), as a wrong code does.
func (ta *TokenAuth) completeWithPasskey(r *http.Request, mfaToken string, credential json.RawMessage) (*authResult, error) {
	pending, user, err := ta.pendingLogin(r.Context(), mfaToken)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(pending.Methods, "passkey") || !ta.passkeysOn() {
		return nil, newAPIError(http.StatusBadRequest, "This login did not offer a passkey as its second factor")
	}
	if err := ta.checkPasskeyFactor(r, user, credential); err != nil {
		return nil, err
	}
	return ta.finishSecondFactor(r, mfaToken, user, "passkey", amrPasswordPasskey)
}

// isInvalidLogin says whether err is the refusal of a credential (401
// Invalid login), as opposed to an mfa_token that is gone (401 Not
// authenticated) or a fault.
func isInvalidLogin(err error) bool {
	var apiErr *apiError
	return errors.As(err, &apiErr) && apiErr.Code == http.StatusUnauthorized && apiErr.Message == errInvalidLogin().Message
}
