package devices

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/gridwatch/gridwatch/internal/secretfile"
)

// SecretKeyFile is the name of the secrets key under data_dir, used when
// secrets.key_file is not set.
const SecretKeyFile = "secret.key"

// sealedPrefix starts every sealed value: "gwsec1:<key id>:<base64url of
// nonce and ciphertext>".
const sealedPrefix = "gwsec1:"

// Errors of the secret box.
var (
	// ErrWrongSecretKey means a sealed value cannot be opened with this
	// node's key: it was sealed under another key, or it is damaged.
	ErrWrongSecretKey = errors.New("secret sealed under another key")
	// ErrBadSecretKey means a key file does not hold a usable key.
	ErrBadSecretKey = errors.New("bad secrets key")
)

// SecretBox seals the secrets the registry must keep readable, RTSP
// passwords, with AES-256-GCM under one key, so that they are ciphertext at
// rest in ClickHouse. Sealing is deterministic: the nonce is an HMAC of the
// device id and the plain text (a synthetic IV), so sealing the same
// password of the same device twice gives the same value and re-imports
// stay "unchanged", while no two different plain texts share a nonce. The
// device id is also the associated data, so a sealed value copied to
// another device does not open. Every node sharing a registry needs the
// same key.
type SecretBox struct {
	aead     cipher.AEAD
	nonceKey []byte
	id       string
}

// NewSecretBox returns a box sealing under a 32-byte key.
func NewSecretBox(key []byte) (*SecretBox, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("%w: %d bytes, want 32", ErrBadSecretKey, len(key))
	}
	encKey, err := hkdf.Key(sha256.New, key, nil, "gridwatch registry secrets: AES-256-GCM", 32)
	if err != nil {
		return nil, fmt.Errorf("derive secrets key: %w", err)
	}
	nonceKey, err := hkdf.Key(sha256.New, key, nil, "gridwatch registry secrets: nonce", 32)
	if err != nil {
		return nil, fmt.Errorf("derive secrets key: %w", err)
	}
	idKey, err := hkdf.Key(sha256.New, key, nil, "gridwatch registry secrets: key id", 4)
	if err != nil {
		return nil, fmt.Errorf("derive secrets key: %w", err)
	}
	block, err := aes.NewCipher(encKey)
	if err != nil {
		return nil, fmt.Errorf("secrets key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("secrets key: %w", err)
	}
	return &SecretBox{aead: aead, nonceKey: nonceKey, id: hex.EncodeToString(idKey)}, nil
}

// LoadSecretBox reads the key at path: 32 bytes in standard base64, as
// `openssl rand -base64 32` writes them. A missing file is an error wrapping
// fs.ErrNotExist: only a server may make a new key (LoadOrCreateSecretBox),
// since one made elsewhere would seal passwords no server can open.
func LoadSecretBox(path string) (*SecretBox, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("secrets key %s: %w", path, err)
	}
	return parseSecretKey(path, text)
}

// LoadOrCreateSecretBox is LoadSecretBox, except that a missing file is
// created with a new random key, readable by its owner only (0600), so that
// a node's first start needs no setup; other nodes sharing the registry
// must then be given a copy of it.
func LoadOrCreateSecretBox(path string) (*SecretBox, error) {
	text, err := secretfile.ReadOrCreate(path, func() ([]byte, error) {
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		return []byte(base64.StdEncoding.EncodeToString(key) + "\n"), nil
	})
	if err != nil {
		return nil, fmt.Errorf("secrets key %s: %w", path, err)
	}
	return parseSecretKey(path, text)
}

// parseSecretKey returns the box of the key text read from path.
func parseSecretKey(path string, text []byte) (*SecretBox, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(text)))
	if err != nil {
		return nil, fmt.Errorf("secrets key %s: %w: not base64 (make one with: openssl rand -base64 32)", path, ErrBadSecretKey)
	}
	box, err := NewSecretBox(key)
	if err != nil {
		return nil, fmt.Errorf("secrets key %s: %w", path, err)
	}
	return box, nil
}

// KeyID names the box's key in sealed values and errors without revealing
// it: 8 hex digits derived from the key.
func (b *SecretBox) KeyID() string { return b.id }

// IsSealed reports whether s is a sealed value rather than plain text.
func IsSealed(s string) bool { return strings.HasPrefix(s, sealedPrefix) }

// SealedKeyID returns the id of the key a sealed value was sealed under.
func SealedKeyID(s string) string {
	id, _, _ := strings.Cut(strings.TrimPrefix(s, sealedPrefix), ":")
	return id
}

// Seal returns plain sealed for the device id.
func (b *SecretBox) Seal(id, plain string) string {
	mac := hmac.New(sha256.New, b.nonceKey)
	mac.Write([]byte(id))
	mac.Write([]byte{0})
	mac.Write([]byte(plain))
	nonce := mac.Sum(nil)[:b.aead.NonceSize()]
	out := b.aead.Seal(nonce, nonce, []byte(plain), []byte(id))
	return sealedPrefix + b.id + ":" + base64.RawURLEncoding.EncodeToString(out)
}

// Open returns the plain text of a value sealed for the device id. The
// error never carries the value.
func (b *SecretBox) Open(id, sealed string) (string, error) {
	if !IsSealed(sealed) {
		return "", fmt.Errorf("%w: not a sealed value", ErrWrongSecretKey)
	}
	keyID, body, _ := strings.Cut(strings.TrimPrefix(sealed, sealedPrefix), ":")
	if keyID != b.id {
		return "", fmt.Errorf("%w: sealed under key %s, this node's key is %s: every node sharing a registry needs the same secrets.key_file",
			ErrWrongSecretKey, keyID, b.id)
	}
	raw, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil || len(raw) < b.aead.NonceSize()+b.aead.Overhead() {
		return "", fmt.Errorf("%w: damaged sealed value", ErrWrongSecretKey)
	}
	n := b.aead.NonceSize()
	plain, err := b.aead.Open(nil, raw[:n], raw[n:], []byte(id))
	if err != nil {
		return "", fmt.Errorf("%w: sealed value of %s does not authenticate (damaged, or copied from another device)", ErrWrongSecretKey, id)
	}
	return string(plain), nil
}
