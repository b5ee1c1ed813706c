package tokenauth

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// parsePEMKey reads the one key in PEM data: a private key in PKCS#8
// ("PRIVATE KEY"), SEC 1 ("EC PRIVATE KEY") or PKCS#1 ("RSA PRIVATE KEY")
// form, or a public key ("PUBLIC KEY", "RSA PUBLIC KEY", or the key of a
// "CERTIFICATE"). priv is nil for public keys. "EC PARAMETERS" blocks, as
// `openssl ecparam -genkey` writes them, are skipped; more than one key is
// refused, as is an encrypted key.
func parsePEMKey(data []byte) (priv crypto.Signer, pub crypto.PublicKey, err error) {
	var found *pem.Block
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type == "EC PARAMETERS" {
			continue
		}
		if found != nil {
			return nil, nil, fmt.Errorf("the PEM holds more than one block (%s, %s); give one key per file", found.Type, block.Type)
		}
		found = block
	}
	if found == nil {
		return nil, nil, errors.New("no PEM key found")
	}
	if found.Type == "ENCRYPTED PRIVATE KEY" || found.Headers["Proc-Type"] != "" {
		return nil, nil, errors.New("encrypted PEM keys are not supported; decrypt it (e.g. `openssl pkey -in key.pem -out plain.pem`)")
	}
	var key any
	switch found.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(found.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(found.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(found.Bytes)
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(found.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(found.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		cert, err = x509.ParseCertificate(found.Bytes)
		if err == nil {
			key = cert.PublicKey
		}
	default:
		return nil, nil, fmt.Errorf("unsupported PEM block %q", found.Type)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("parsing %s: %w", found.Type, err)
	}
	switch k := key.(type) {
	case ed25519.PrivateKey:
		return k, k.Public(), nil
	case *ecdsa.PrivateKey:
		return k, &k.PublicKey, nil
	case *rsa.PrivateKey:
		return k, &k.PublicKey, nil
	case ed25519.PublicKey, *ecdsa.PublicKey, *rsa.PublicKey:
		return nil, k, nil
	default:
		return nil, nil, fmt.Errorf("the PEM holds %s, which cannot sign tokens", keyKind(key))
	}
}

// keyKind names a key's type for error messages.
func keyKind(key any) string {
	switch k := key.(type) {
	case ed25519.PublicKey, ed25519.PrivateKey:
		return "an Ed25519 key"
	case *ecdsa.PublicKey:
		return "an ECDSA " + k.Curve.Params().Name + " key"
	case *ecdsa.PrivateKey:
		return "an ECDSA " + k.Curve.Params().Name + " key"
	case *rsa.PublicKey, *rsa.PrivateKey:
		return "an RSA key"
	case *ecdh.PublicKey, *ecdh.PrivateKey:
		return "an X25519 (key agreement) key"
	default:
		return fmt.Sprintf("a %T", key)
	}
}
