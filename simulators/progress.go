package simulators

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// progressInterval is how often live progress lines are written.
const progressInterval = time.Second

// progress writes live status lines: on a terminal one line rewritten in
// place with \r, elsewhere (a log file, a pipe) one plain line each time.
type progress struct {
	w     io.Writer
	tty   bool
	width int // length of the last line written in place
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

// update writes a live line.
func (p *progress) update(s string) {
	if p.w == nil {
		return
	}
	if !p.tty {
		fmt.Fprintln(p.w, s)
		return
	}
	pad := ""
	if n := p.width - len(s); n > 0 {
		pad = strings.Repeat(" ", n)
	}
	p.width = len(s)
	fmt.Fprint(p.w, "\r"+s+pad)
}

// final writes the closing line, ending a line written in place.
func (p *progress) final(s string) {
	if p.w == nil {
		return
	}
	if p.tty && p.width > 0 {
		fmt.Fprint(p.w, "\r"+strings.Repeat(" ", p.width)+"\r")
	}
	p.width = 0
	fmt.Fprintln(p.w, s)
}

// run calls line every progressInterval and writes what it returns until ctx
// ends; line gets the time since the previous call. Without a writer it only
// waits for ctx.
func (p *progress) run(ctx context.Context, line func(dt time.Duration) string) {
	if p.w == nil {
		<-ctx.Done()
		return
	}
	t := time.NewTicker(progressInterval)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			p.update(line(now.Sub(last)))
			last = now
		}
	}
}

// perSecond returns n events over dt as a rate.
func perSecond(n int64, dt time.Duration) float64 {
	if dt <= 0 {
		return 0
	}
	return float64(n) / dt.Seconds()
}
