package main

// DPoP jobs of bench/load.sh's dpop mode:
//
//	loadhelper dpop-login <url> <user> <pw> <keyfile>   makes an ES256 key (written to keyfile, PKCS #8 PEM),
//	                                                   logs in with a proof by it; prints the bound access token
//	loadhelper dpop-proofs <keyfile> <htu> <token> <n>  prints n proofs (GET htu, ath of token), each its own jti

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
)

func dpopLogin(url, user, pw, keyfile string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(keyfile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	proof, err := dpopProof(key, "POST", url, "")
	if err != nil {
		return err
	}
	body, _ := json.Marshal(map[string]string{"strategy": "local", "username": user, "password": pw})
	req, err := http.NewRequest("POST", url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("DPoP", proof)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var res struct {
		AccessToken string
		TokenType   string `json:"token_type"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil || resp.StatusCode != http.StatusCreated || res.TokenType != "DPoP" {
		return fmt.Errorf("dpop login: status %d, token_type %q, %v", resp.StatusCode, res.TokenType, err)
	}
	fmt.Println(res.AccessToken)
	return nil
}

func dpopProofs(keyfile, htu, token string, n int) error {
	data, err := os.ReadFile(keyfile)
	if err != nil {
		return err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return errors.New("no PEM block in " + keyfile)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return err
	}
	key, ok := parsed.(*ecdsa.PrivateKey)
	if !ok {
		return errors.New("not an ECDSA key")
	}
	out := make([]string, n)
	var wg sync.WaitGroup
	var firstErr error
	var mu sync.Mutex
	workers := runtime.NumCPU()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += workers {
				p, err := dpopProof(key, "GET", htu, token)
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
				out[i] = p
			}
		}(w)
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	bw := bufio.NewWriter(os.Stdout)
	for _, p := range out {
		fmt.Fprintln(bw, p)
	}
	return bw.Flush()
}

// dpopProof signs an RFC 9449 proof for method and htu (with ath when
// token is set).
func dpopProof(key *ecdsa.PrivateKey, method, htu, token string) (string, error) {
	jwk, err := json.Marshal(jose.JSONWebKey{Key: key.Public()})
	if err != nil {
		return "", err
	}
	claims := jwt.MapClaims{"jti": randomID(), "htm": method, "htu": htu, "iat": time.Now().Unix()}
	if token != "" {
		sum := sha256.Sum256([]byte(token))
		claims["ath"] = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	t := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	t.Header["typ"] = "dpop+jwt"
	t.Header["jwk"] = json.RawMessage(jwk)
	return t.SignedString(key)
}
