package gb28181

import (
	"testing"
	"time"

	"github.com/icholy/digest"
)

// TestDigestCheck answers a challenge as a device does and checks each
// way an answer can be wrong: a nonce only counts from the host it was
// sent to and within its lifetime, so a stranger spoofing the device's
// address gets a new challenge, never a failure against the device.
func TestDigestCheck(t *testing.T) {
	n, err := newNonces(time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	const (
		dev  = "34020000001320000001"
		host = "10.1.2.3"
	)
	now := time.Unix(1_800_000_000, 0)
	answer := func(nonce, user, password string, qop bool) string {
		chal := &digest.Challenge{Realm: DefaultRealm, Nonce: nonce, Algorithm: "MD5"}
		if qop {
			chal.QOP = []string{"auth"}
		}
		cred, err := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:" + DefaultID + "@" + DefaultRealm, Username: user, Password: password})
		if err != nil {
			t.Fatal(err)
		}
		return cred.String()
	}
	nonce := n.issue(now, host, dev)
	for _, c := range []struct {
		name   string
		header string
		at     time.Time
		host   string
		want   authResult
	}{
		{"right, qop=auth", answer(nonce, dev, "secret-1", true), now, host, authOK},
		{"right, RFC 2069", answer(nonce, dev, "secret-1", false), now.Add(30 * time.Second), host, authOK},
		{"wrong password", answer(nonce, dev, "secret-2", true), now, host, authWrong},
		{"another user", answer(nonce, "34020000001320000002", "secret-1", true), now, host, authWrongUser},
		{"from another host", answer(nonce, dev, "secret-2", true), now, "10.9.9.9", authStale},
		{"expired", answer(nonce, dev, "secret-1", true), now.Add(2 * time.Minute), host, authStale},
		{"forged nonce", answer("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", dev, "secret-1", true), now, host, authStale},
		{"not digest", "Basic eDp5", now, host, authMalformed},
	} {
		if got := n.check(c.header, "REGISTER", DefaultRealm, c.at, c.host, dev, "secret-1"); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
