package tokenauth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

// softAuthenticator is a passkey authenticator in software, for tests: an
// ES256 key, a discoverable credential, a sign counter, and the choice of
// verifying its user. It answers the options the endpoint hands out as a
// browser would (WebAuthn's JSON forms). Only the test encodes CBOR (a
// "none" attestation and the COSE key); parsing is the library's.
type softAuthenticator struct {
	t          testing.TB
	key        *ecdsa.PrivateKey
	credID     []byte
	userHandle []byte
	rpID       string // the RP ID it was registered for
	counter    uint32
	verifyUser bool
}

func newSoftAuthenticator(t testing.TB) *softAuthenticator {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	return &softAuthenticator{t: t, key: key, credID: id, verifyUser: true}
}

// authenticator data flags (WebAuthn §6.1)
const (
	flagUP = 0x01
	flagUV = 0x04
	flagAT = 0x40
)

func (a *softAuthenticator) authData(rpID string, attested []byte) []byte {
	hash := sha256.Sum256([]byte(rpID))
	flags := byte(flagUP)
	if a.verifyUser {
		flags |= flagUV
	}
	if attested != nil {
		flags |= flagAT
	}
	out := append(hash[:], flags)
	out = binary.BigEndian.AppendUint32(out, a.counter)
	return append(out, attested...)
}

func (a *softAuthenticator) coseKey() []byte {
	x, y := make([]byte, 32), make([]byte, 32)
	a.key.PublicKey.X.FillBytes(x)
	a.key.PublicKey.Y.FillBytes(y)
	// kty EC2, alg ES256, crv P-256, x, y
	key, err := cbor.Marshal(map[int]any{1: 2, 3: -7, -1: 1, -2: x, -3: y})
	if err != nil {
		a.t.Fatal(err)
	}
	return key
}

func clientData(typ, challenge, origin string) []byte {
	data, _ := json.Marshal(map[string]any{"type": typ, "challenge": challenge, "origin": origin, "crossOrigin": false})
	return data
}

// creationOptions is the part of {"publicKey": ...} the authenticator reads.
type creationOptions struct {
	PublicKey struct {
		Challenge string `json:"challenge"`
		RP        struct {
			ID string `json:"id"`
		} `json:"rp"`
		User struct {
			ID string `json:"id"`
		} `json:"user"`
		ExcludeCredentials []struct {
			ID string `json:"id"`
		} `json:"excludeCredentials"`
		AuthenticatorSelection struct {
			ResidentKey string `json:"residentKey"`
		} `json:"authenticatorSelection"`
	} `json:"publicKey"`
}

// register answers creation options at origin, for the options' RP ID
// unless rpID overrides it.
func (a *softAuthenticator) register(options []byte, origin, rpID string) json.RawMessage {
	a.t.Helper()
	var opts creationOptions
	if err := json.Unmarshal(options, &opts); err != nil {
		a.t.Fatalf("creation options %s: %v", options, err)
	}
	if rpID == "" {
		rpID = opts.PublicKey.RP.ID
	}
	a.rpID = rpID
	handle, err := b64url.DecodeString(opts.PublicKey.User.ID)
	if err != nil {
		a.t.Fatalf("user.id %q: %v", opts.PublicKey.User.ID, err)
	}
	a.userHandle = handle
	attested := make([]byte, 16) // AAGUID: none
	attested = binary.BigEndian.AppendUint16(attested, uint16(len(a.credID)))
	attested = append(append(attested, a.credID...), a.coseKey()...)
	attObj, err := cbor.Marshal(map[string]any{"fmt": "none", "attStmt": map[string]any{}, "authData": a.authData(rpID, attested)})
	if err != nil {
		a.t.Fatal(err)
	}
	cd := clientData("webauthn.create", opts.PublicKey.Challenge, origin)
	resp, _ := json.Marshal(map[string]any{
		"id": b64url.EncodeToString(a.credID), "rawId": b64url.EncodeToString(a.credID), "type": "public-key",
		"response": map[string]any{
			"clientDataJSON":    b64url.EncodeToString(cd),
			"attestationObject": b64url.EncodeToString(attObj),
			"transports":        []string{"internal"},
		},
		"clientExtensionResults": map[string]any{},
	})
	return resp
}

// requestOptions is the part of {"publicKey": ...} a sign-in reads.
type requestOptions struct {
	PublicKey struct {
		Challenge        string `json:"challenge"`
		RPID             string `json:"rpId"`
		AllowCredentials []any  `json:"allowCredentials"`
		UserVerification string `json:"userVerification"`
	} `json:"publicKey"`
}

// assertion is the authenticator's answer, with its parts open to tampering.
type assertion struct {
	credID, userHandle, clientData, authData, signature []byte
}

func (s assertion) json() json.RawMessage {
	resp, _ := json.Marshal(map[string]any{
		"id": b64url.EncodeToString(s.credID), "rawId": b64url.EncodeToString(s.credID), "type": "public-key",
		"response": map[string]any{
			"clientDataJSON":    b64url.EncodeToString(s.clientData),
			"authenticatorData": b64url.EncodeToString(s.authData),
			"signature":         b64url.EncodeToString(s.signature),
			"userHandle":        b64url.EncodeToString(s.userHandle),
		},
		"clientExtensionResults": map[string]any{},
	})
	return resp
}

// sign answers request options at origin: the counter goes up by one
// first, as a real authenticator's does.
func (a *softAuthenticator) sign(options []byte, origin string) assertion {
	a.t.Helper()
	var opts requestOptions
	if err := json.Unmarshal(options, &opts); err != nil {
		a.t.Fatalf("request options %s: %v", options, err)
	}
	a.counter++
	return a.signChallenge(opts.PublicKey.Challenge, origin)
}

func (a *softAuthenticator) signChallenge(challenge, origin string) assertion {
	a.t.Helper()
	cd := clientData("webauthn.get", challenge, origin)
	ad := a.authData(a.rpID, nil)
	cdHash := sha256.Sum256(cd)
	digest := sha256.Sum256(append(append([]byte(nil), ad...), cdHash[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, a.key, digest[:])
	if err != nil {
		a.t.Fatal(err)
	}
	return assertion{credID: a.credID, userHandle: a.userHandle, clientData: cd, authData: ad, signature: sig}
}
