package alerts

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"time"
)

// DefaultWatchEvery is how often a RuleWatcher checks its file.
const DefaultWatchEvery = 2 * time.Second

// RuleWatcher reloads a rules file when it changes (its modification time
// or size), handing each valid new rule set to Apply. An invalid file is
// logged with the rule and field at fault, and the rules in force stay.
// Polling, rather than inotify, also sees files replaced by editors and
// config-map symlink swaps.
type RuleWatcher struct {
	// Path is the rules file. Required.
	Path string
	// Apply receives each new rule set, such as Engine.SetRules. Required.
	Apply func(*RuleSet)
	// Every is the polling period. It defaults to 2 seconds.
	Every time.Duration
	// Logger defaults to discarding.
	Logger *slog.Logger

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// Start notes the file's current version and polls it until Close.
func (w *RuleWatcher) Start(ctx context.Context) {
	if w.Every <= 0 {
		w.Every = DefaultWatchEvery
	}
	if w.Logger == nil {
		w.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, w.cancel = context.WithCancel(context.WithoutCancel(ctx))
	last := stamp(w.Path)
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		t := time.NewTicker(w.Every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if s := stamp(w.Path); s != last {
				last = s
				w.reload()
			}
		}
	}()
}

// reload loads the file and applies it when valid.
func (w *RuleWatcher) reload() {
	rs, err := LoadRules(w.Path)
	if err != nil {
		w.Logger.Error("rules file changed but is invalid; the rules in force stay", "file", w.Path, "err", err)
		return
	}
	w.Apply(rs)
	w.Logger.Info("rules reloaded", "file", w.Path, "rules", len(rs.rules))
}

// fileStamp identifies a version of a file.
type fileStamp struct {
	mod  time.Time
	size int64
}

// stamp returns path's current version; the zero stamp when it cannot be
// read.
func stamp(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	return fileStamp{fi.ModTime(), fi.Size()}
}

// Close stops watching. It is safe to call twice.
func (w *RuleWatcher) Close() {
	w.closeOnce.Do(func() {
		if w.cancel != nil {
			w.cancel()
			w.wg.Wait()
		}
	})
}
