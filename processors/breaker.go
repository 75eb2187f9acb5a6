package processors

import (
	"fmt"
	"sync"
	"time"
)

// breaker is a circuit breaker for one dependency. Closed, it counts
// consecutive failed requests; at `threshold` it opens for `cooldown`, and
// every call fails fast without touching the dependency. After the cool-down
// it is half-open: exactly one probe request goes out; its success closes the
// circuit, its failure opens it for another cool-down.
//
// A failure that carries a Retry-After opens the circuit at once for that
// long (the service asked not to be called), even below the threshold.
//
// Callers report each request's outcome: success (the service answered,
// including "not found" and other per-record answers), failure (outage
// classes), or release (the caller gave up, e.g. its context was canceled:
// says nothing about the dependency).
type breaker struct {
	threshold int
	cooldown  time.Duration
	now       func() time.Time
	// onChange is told about every state change, outside the lock (so
	// it may run concurrently with itself).
	onChange func(from, to breakerState, fails int, cause error)

	mu        sync.Mutex
	state     breakerState
	fails     int // consecutive failures while closed
	openUntil time.Time
	probing   bool  // the half-open probe is in flight
	lastErr   error // the failure that opened the circuit
}

type breakerState int

const (
	breakerClosed breakerState = iota
	breakerOpen
	breakerHalfOpen
)

func (s breakerState) String() string {
	switch s {
	case breakerOpen:
		return "open"
	case breakerHalfOpen:
		return "half-open"
	}
	return "closed"
}

func newBreaker(threshold int, cooldown time.Duration, now func() time.Time) *breaker {
	return &breaker{threshold: threshold, cooldown: cooldown, now: now}
}

// circuitOpenError is returned instead of calling a dependency that is down.
type circuitOpenError struct {
	Remaining time.Duration // until the next probe; 0 while a probe is in flight
	Cause     error
}

func (e *circuitOpenError) Error() string {
	s := "circuit open"
	if e.Remaining > 0 {
		s += fmt.Sprintf(" (next probe in %v)", e.Remaining.Round(time.Millisecond))
	} else {
		s += " (probe in flight)"
	}
	if e.Cause != nil {
		s += ": last failure: " + e.Cause.Error()
	}
	return s
}

func (e *circuitOpenError) Unwrap() error { return e.Cause }

// allow reports whether a request may go out; probe is true for the single
// half-open trial, which the caller must pass back to success, failure or
// release.
func (b *breaker) allow() (probe bool, err error) {
	b.mu.Lock()
	from := b.state
	switch b.state {
	case breakerOpen:
		if rem := b.openUntil.Sub(b.now()); rem > 0 {
			err = &circuitOpenError{Remaining: rem, Cause: b.lastErr}
			break
		}
		b.state, b.probing, probe = breakerHalfOpen, true, true
	case breakerHalfOpen:
		if b.probing {
			err = &circuitOpenError{Cause: b.lastErr}
			break
		}
		b.probing, probe = true, true
	}
	to, fails, cause := b.state, b.fails, b.lastErr
	b.mu.Unlock()
	b.notify(from, to, fails, cause)
	return probe, err
}

// success reports an answer from the dependency.
func (b *breaker) success(probe bool) {
	b.mu.Lock()
	from := b.state
	switch {
	case probe && b.state == breakerHalfOpen:
		b.state, b.probing, b.fails, b.lastErr = breakerClosed, false, 0, nil
	case b.state == breakerClosed:
		b.fails = 0
	}
	// A success of a request that began before the circuit opened proves
	// little; the probe decides.
	to := b.state
	b.mu.Unlock()
	b.notify(from, to, 0, nil)
}

// failure reports an outage-class failure. retryAfter > 0 is the service's
// own request to wait.
func (b *breaker) failure(probe bool, cause error, retryAfter time.Duration) {
	b.mu.Lock()
	from := b.state
	switch {
	case probe && b.state == breakerHalfOpen:
		b.open(cause, max(b.cooldown, retryAfter))
	case b.state == breakerClosed:
		b.fails++
		switch {
		case b.fails >= b.threshold:
			b.open(cause, max(b.cooldown, retryAfter))
		case retryAfter > 0:
			b.open(cause, retryAfter)
		}
	}
	to, fails := b.state, b.fails
	b.mu.Unlock()
	b.notify(from, to, fails, cause)
}

// release gives the probe slot back without a verdict.
func (b *breaker) release(probe bool) {
	if !probe {
		return
	}
	b.mu.Lock()
	if b.state == breakerHalfOpen {
		b.probing = false
	}
	b.mu.Unlock()
}

func (b *breaker) open(cause error, d time.Duration) {
	b.state, b.probing, b.lastErr = breakerOpen, false, cause
	b.openUntil = b.now().Add(d)
}

func (b *breaker) notify(from, to breakerState, fails int, cause error) {
	if from != to && b.onChange != nil {
		b.onChange(from, to, fails, cause)
	}
}

// snapshot returns the state (for tests and diagnostics).
func (b *breaker) snapshot() breakerState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}
