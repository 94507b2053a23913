package gb28181

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/icholy/digest"
)

// nonces issues and checks the nonces of digest challenges without keeping
// state: a nonce is its issue time and an HMAC, under a per-process key, of
// that time, the source address's host and the device id. A nonce is valid
// for lifetime, from the host it was sent to, for the device it was issued
// to. So only a peer that received the challenge can answer it: a stranger
// spoofing a device's address (UDP) cannot make failures count against that
// address, since without the nonce its answers are stale, not wrong.
type nonces struct {
	key      []byte
	lifetime time.Duration
}

func newNonces(lifetime time.Duration) (*nonces, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("gb28181: nonce key: %w", err)
	}
	return &nonces{key: key, lifetime: lifetime}, nil
}

// mac is the HMAC of an issue time for a host and device.
func (n *nonces) mac(issued []byte, host, device string) []byte {
	h := hmac.New(sha256.New, n.key)
	h.Write(issued)
	h.Write([]byte(host))
	h.Write([]byte{0})
	h.Write([]byte(device))
	return h.Sum(nil)[:16]
}

// issue returns a new nonce for a challenge sent to host for device.
func (n *nonces) issue(now time.Time, host, device string) string {
	issued := binary.BigEndian.AppendUint64(nil, uint64(now.UnixNano()))
	return base64.RawURLEncoding.EncodeToString(append(issued, n.mac(issued, host, device)...))
}

// valid reports whether nonce was issued by this process to host for
// device within the lifetime.
func (n *nonces) valid(nonce string, now time.Time, host, device string) bool {
	raw, err := base64.RawURLEncoding.DecodeString(nonce)
	if err != nil || len(raw) != 8+16 {
		return false
	}
	issued := time.Unix(0, int64(binary.BigEndian.Uint64(raw[:8])))
	if age := now.Sub(issued); age < 0 || age > n.lifetime {
		return false
	}
	return hmac.Equal(raw[8:], n.mac(raw[:8], host, device))
}

// challenge returns the WWW-Authenticate value of a 401: MD5 digest, as
// GB/T 28181 devices answer it, with qop=auth offered (RFC 2617; devices
// that ignore qop answer in the RFC 2069 form, which is accepted too).
func (n *nonces) challenge(realm, nonce string, stale bool) string {
	c := digest.Challenge{Realm: realm, Nonce: nonce, Algorithm: "MD5", QOP: []string{"auth"}, Stale: stale}
	return c.String()
}

// authResult is the outcome of checking a REGISTER's credentials.
type authResult int

const (
	authOK        authResult = iota
	authMalformed            // the Authorization header cannot be read
	authStale                // the nonce is not one of ours, or too old: challenge again
	authWrongUser            // the username is not the device id
	authWrong                // a valid nonce, a wrong response: a wrong password
)

// check verifies the Authorization value of a REGISTER from host for
// device against password.
func (n *nonces) check(header, method, realm string, now time.Time, host, device, password string) authResult {
	cred, err := digest.ParseCredentials(header)
	if err != nil || cred.Response == "" || cred.Nonce == "" {
		return authMalformed
	}
	if !n.valid(cred.Nonce, now, host, device) {
		return authStale
	}
	if cred.Username != device {
		return authWrongUser
	}
	chal := &digest.Challenge{Realm: cred.Realm, Nonce: cred.Nonce, Algorithm: cred.Algorithm, Opaque: cred.Opaque}
	if cred.QOP != "" {
		if !strings.EqualFold(cred.QOP, "auth") || cred.Cnonce == "" {
			return authMalformed
		}
		chal.QOP = []string{"auth"}
	}
	if cred.Realm != realm {
		// The password is keyed to our realm (HA1 holds it): an answer for
		// another realm cannot be right, but it is the device's mistake of
		// configuration, not a guess.
		return authWrong
	}
	want, err := digest.Digest(chal, digest.Options{
		Method: method, URI: cred.URI, Username: cred.Username, Password: password,
		Cnonce: cred.Cnonce, Count: cred.Nc,
	})
	if err != nil {
		return authMalformed
	}
	if subtle.ConstantTimeCompare([]byte(strings.ToLower(want.Response)), []byte(strings.ToLower(cred.Response))) != 1 {
		return authWrong
	}
	return authOK
}
