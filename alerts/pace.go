package alerts

import (
	"bufio"
	"bytes"
	"os"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// DefaultReadShare is the share of the process's CPU that staff reads
// scanning alerts may take while ingestion runs and the machine has no idle
// CPU (see Engine.ReadShare).
const DefaultReadShare = 0.1

// readBurst is the CPU time staff reads may take at once before pacing
// applies: a lone list or export of 100,000 alerts is never held back.
const readBurst = 50 * time.Millisecond

// readPace is the CPU budget of the read slots' holders. A slot holder
// spends it by the CPU time its thread used in the slot. The budget earns
// share of the CPU time the process used (the staff's own included) and
// all the machine's idle CPU time; when ingestion observed nothing since
// the last look, or the machine's idle time cannot be read, it is full:
// there is nothing to protect, or no way to tell. A slot holder waits,
// parked, while the budget is spent.
type readPace struct {
	share float64
	// The sources; tests replace them.
	now      func() time.Time
	process  func() time.Duration         // CPU time of the process so far
	idle     func() (time.Duration, bool) // idle CPU time of the machine so far
	observed func() uint64                // observations ingestion made so far
	sleep    func(time.Duration)

	mu          sync.Mutex
	tokens      time.Duration
	at          time.Time
	proc, spare time.Duration
	obs         uint64
}

// newReadPace returns a budget of share, full, on the process's and the
// machine's clocks; observed counts ingestion's observations.
func newReadPace(share float64, observed func() uint64) *readPace {
	p := &readPace{share: share, now: time.Now, process: processCPU, idle: machineIdle, observed: observed, sleep: time.Sleep}
	p.tokens = readBurst
	p.at, p.proc, p.obs = p.now(), p.process(), p.observed()
	p.spare, _ = p.idle()
	return p
}

// wait returns once the budget is not spent.
func (p *readPace) wait() {
	for {
		p.mu.Lock()
		p.refill()
		owed := -p.tokens
		p.mu.Unlock()
		if owed < 0 {
			return
		}
		// At share of the process's CPU, the debt takes owed/share of the
		// process's CPU time to repay: look again well before.
		p.sleep(min(max(time.Duration(float64(owed)/p.share)/4, time.Millisecond), 20*time.Millisecond))
	}
}

// refill adds what the budget earned since the last look, at most once a
// millisecond. Called with mu held.
func (p *readPace) refill() {
	now := p.now()
	if now.Sub(p.at) < time.Millisecond {
		return
	}
	proc, obs := p.process(), p.observed()
	spare, ok := p.idle()
	earned := readBurst
	if ok && obs != p.obs {
		earned = time.Duration(p.share*float64(proc-p.proc)) + spare - p.spare
	}
	p.tokens = min(p.tokens+earned, readBurst)
	p.at, p.proc, p.spare, p.obs = now, proc, spare, obs
}

// spend charges used to the budget.
func (p *readPace) spend(used time.Duration) {
	p.mu.Lock()
	p.tokens -= used
	p.mu.Unlock()
}

// slot runs the part of a read that holds a read slot: it locks the
// goroutine to its thread so that the thread's CPU time is the read's,
// and returns the function that charges it and unlocks.
func (p *readPace) slot() (done func()) {
	runtime.LockOSThread()
	start := threadCPU()
	return func() {
		p.spend(threadCPU() - start)
		runtime.UnlockOSThread()
	}
}

// processCPU is the CPU time the process used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// threadCPU is the CPU time the calling thread used so far.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	const rusageThread = 1 // RUSAGE_THREAD, Linux
	_ = syscall.Getrusage(rusageThread, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineIdle is the idle CPU time of every core of the machine so far,
// from /proc/stat (Linux); false where it cannot be read.
func machineIdle() (time.Duration, bool) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadSlice('\n')
	fields := bytes.Fields(line)
	// cpu user nice system idle ...: in USER_HZ, 100 a second on Linux.
	if err != nil || len(fields) < 5 || string(fields[0]) != "cpu" {
		return 0, false
	}
	ticks, err := strconv.ParseUint(string(fields[4]), 10, 64)
	if err != nil {
		return 0, false
	}
	return time.Duration(ticks) * 10 * time.Millisecond, true
}
