package devices

import (
	"context"
	"testing"
	"time"
)

func TestVerifierRotationAndCache(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	v := &Verifier{Now: func() time.Time { return now }}
	h, err := HashSecret("old")
	if err != nil {
		t.Fatal(err)
	}
	d := Device{ID: "a-1", SecretHash: h}
	ctx := context.Background()
	if !v.Verify(ctx, d, []byte("old")) || v.Verify(ctx, d, []byte("wrong")) {
		t.Fatal("verify old/wrong")
	}
	d, err = Rotate(d, "new", time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	if !v.Verify(ctx, d, []byte("new")) || !v.Verify(ctx, d, []byte("old")) {
		t.Fatal("within the grace period both secrets must work")
	}
	now = now.Add(2 * time.Hour)
	if v.Verify(ctx, d, []byte("old")) {
		t.Fatal("old secret still valid after the grace period (cache not invalidated)")
	}
	if !v.Verify(ctx, d, []byte("new")) {
		t.Fatal("new secret refused")
	}
}

// BenchmarkVerify compares a cold argon2id check with a cached one.
func BenchmarkVerify(b *testing.B) {
	h, _ := HashSecret("s")
	d := Device{ID: "a-1", SecretHash: h}
	b.Run("argon2id", func(b *testing.B) {
		for b.Loop() {
			CheckSecret(h, []byte("s"))
		}
	})
	b.Run("cached", func(b *testing.B) {
		v := &Verifier{}
		v.Verify(context.Background(), d, []byte("s"))
		for b.Loop() {
			v.Verify(context.Background(), d, []byte("s"))
		}
	})
}
