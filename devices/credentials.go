package devices

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/argon2"
)

// Argon2id parameters of new hashes. What makes a device secret hard to
// guess is its entropy: generated ones carry 192 bits (GenerateSecret) and
// imported ones must have at least MinSecretLen characters; the slow hash is
// defence in depth for imported secrets. Its cost is paid once per import row
// and once per cold connect, so it sets how long importing 100k devices and a
// reconnect storm after a restart take. Measured on 2 cores: 256 KiB costs
// 0.4 ms (100k imported in about 20 s), 2 MiB 3 ms (about 3 minutes), 8 MiB
// 16 ms. The parameters travel in each hash string, so raising them later
// leaves existing hashes valid.
const (
	argonTime    = 1
	argonMemory  = 256 // KiB
	argonThreads = 1
	argonKeyLen  = 32
	argonSaltLen = 16
)

// MinSecretLen is the shortest secret an import accepts.
const MinSecretLen = 16

// secretBytes is the entropy of a generated secret: 192 bits.
const secretBytes = 24

// GenerateSecret returns a new random device secret, URL-safe base64.
func GenerateSecret() (string, error) {
	b := make([]byte, secretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate secret: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// HashSecret returns the argon2id hash of secret in the PHC string format:
// $argon2id$v=19$m=256,t=1,p=1$salt$key.
func HashSecret(secret string) (string, error) {
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hash secret: %w", err)
	}
	key := argon2.IDKey([]byte(secret), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, argonMemory, argonTime, argonThreads, enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

// CheckSecret reports whether secret matches hash, a HashSecret string. A
// malformed hash matches nothing.
func CheckSecret(hash string, secret []byte) bool {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" || parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return false
	}
	var m uint32
	var t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m == 0 || m > 1<<20 || t == 0 || t > 16 || p == 0 {
		return false
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	want, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 || len(want) > 64 {
		return false
	}
	got := argon2.IDKey(secret, salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// Verifier checks device secrets against their slow hashes. It remembers, per
// device, a keyed MAC of the last secret that verified and the hash it
// verified against, so a device reconnecting with the same secret costs one
// HMAC instead of one argon2id run. A rotation changes the hash, which
// invalidates the entry; the MAC key is random per process, so the cache
// holds nothing an attacker could reuse. Slow checks run at most
// MaxConcurrent at a time, bounding the memory a storm can take.
type Verifier struct {
	// MaxConcurrent bounds simultaneous argon2id runs. It defaults to
	// runtime.GOMAXPROCS(0).
	MaxConcurrent int
	// Now tells the time for the rotation grace period. It defaults to
	// time.Now.
	Now func() time.Time

	once  sync.Once
	key   []byte
	sem   chan struct{}
	mu    sync.Mutex
	cache map[string]verified
}

// verified is what a Verifier remembers of one device.
type verified struct {
	hash string // the stored hash the secret verified against
	mac  [sha256.Size]byte
}

func (v *Verifier) init() {
	if v.MaxConcurrent <= 0 {
		v.MaxConcurrent = runtime.GOMAXPROCS(0)
	}
	if v.Now == nil {
		v.Now = time.Now
	}
	v.key = make([]byte, 32)
	_, _ = rand.Read(v.key) // crypto/rand.Read never fails (Go 1.24+)
	v.sem = make(chan struct{}, v.MaxConcurrent)
	v.cache = make(map[string]verified)
}

// Verify reports whether secret is d's current secret, or its previous one
// within the rotation grace period. It returns false when ctx ends while
// waiting for a hashing slot.
func (v *Verifier) Verify(ctx context.Context, d Device, secret []byte) bool {
	v.once.Do(v.init)
	hashes := []string{d.SecretHash}
	if d.PrevSecretHash != "" && v.Now().Before(d.PrevSecretUntil) {
		hashes = append(hashes, d.PrevSecretHash)
	}
	mac := v.mac(d.ID, secret)
	v.mu.Lock()
	c, ok := v.cache[d.ID]
	v.mu.Unlock()
	for _, h := range hashes {
		if ok && h != "" && c.hash == h && hmac.Equal(c.mac[:], mac[:]) {
			return true
		}
	}
	for _, h := range hashes {
		if h == "" {
			continue
		}
		select {
		case v.sem <- struct{}{}:
		case <-ctx.Done():
			return false
		}
		match := CheckSecret(h, secret)
		<-v.sem
		if match {
			v.mu.Lock()
			v.cache[d.ID] = verified{hash: h, mac: mac}
			v.mu.Unlock()
			return true
		}
	}
	return false
}

func (v *Verifier) mac(id string, secret []byte) [sha256.Size]byte {
	m := hmac.New(sha256.New, v.key)
	m.Write([]byte(id))
	m.Write([]byte{0})
	m.Write(secret)
	var out [sha256.Size]byte
	m.Sum(out[:0])
	return out
}

// Rotate gives d newSecret, keeping its current secret valid for grace. It
// returns the updated device.
func Rotate(d Device, newSecret string, grace time.Duration, now time.Time) (Device, error) {
	h, err := HashSecret(newSecret)
	if err != nil {
		return d, err
	}
	if d.SecretHash != "" && grace > 0 {
		d.PrevSecretHash, d.PrevSecretUntil = d.SecretHash, now.Add(grace).UTC()
	} else {
		d.PrevSecretHash, d.PrevSecretUntil = "", time.Time{}
	}
	d.SecretHash, d.Secret = h, ""
	return d, nil
}
