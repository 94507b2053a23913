package cases

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Claims names, cluster-wide, the case each alert condition (the source,
// device and category of a sensor or camera case) raised, when the alert
// engines of several nodes raise cases (the server keeps them in
// ZooKeeper): a node about to open a case for a firing alert claims the
// condition for it first, compare-and-set, and joins the open case that
// holds it instead when there is one. The same condition firing on two
// nodes so opens one case.
type Claims interface {
	// Claim reads the condition's claim.
	Claim(ctx context.Context, condition string) (Claim, error)
	// Swap moves the condition's claim from c, as read, to the case id;
	// ok is false when another node moved it since.
	Swap(ctx context.Context, condition string, c Claim, id string) (ok bool, err error)
}

// Claim is an alert condition's claim as Claims read it.
type Claim struct {
	// Case is the id of the case holding the condition, "" when none.
	Case string
	// Set is when it was set.
	Set time.Time
	// Stamp is what Swap compares, Claims' own.
	Stamp int64
}

// conditionKey keys the condition of an alert.
func conditionKey(a AlertInfo) string {
	return string(a.Source) + "," + a.Device + "," + a.Category
}

// claimAttempts bounds the claims of one condition changing under a node.
const claimAttempts = 5

// claimPoll is how often claim looks again for a claimed case being made.
const claimPoll = 50 * time.Millisecond

// claim makes id the case of alert a's condition cluster-wide, unless an
// open case of it holds the claim: then it returns that case's entry, read
// from the Store when another node made it. A claim naming a case the
// Store does not hold yet is its node's case being made: claim waits for it
// up to SaveTimeout, then answers ErrNotSaved (the intake retries), and
// after StaleAfter takes the claim over.
func (s *Service) claim(ctx context.Context, a AlertInfo, id string) (*entry, error) {
	key := conditionKey(a)
	wait := time.Now().Add(s.SaveTimeout)
	for swaps := 0; swaps < claimAttempts; {
		cl, err := s.Claims.Claim(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("%w: the claim of alert condition %s is unreadable: %w", ErrNotSaved, key, err)
		}
		if cl.Case != "" {
			en, err := s.entryOf(ctx, cl.Case)
			switch {
			case err == nil:
				if c := s.current(en); c.Open() && c.MergedInto == "" {
					return en, nil
				}
			case !errors.Is(err, ErrNotFound):
				return nil, err
			case s.Now().Sub(cl.Set) <= s.StaleAfter:
				if time.Now().After(wait) {
					return nil, fmt.Errorf("%w: alert condition %s is claimed by case %s, being made on another node: retry", ErrNotSaved, key, cl.Case)
				}
				select {
				case <-ctx.Done():
					return nil, ctx.Err()
				case <-time.After(claimPoll):
				}
				continue
			}
		}
		ok, err := s.Claims.Swap(ctx, key, cl, id)
		if err != nil {
			return nil, fmt.Errorf("%w: alert condition %s not claimed: %w", ErrNotSaved, key, err)
		}
		if ok {
			return nil, nil
		}
		swaps++
	}
	return nil, fmt.Errorf("%w: the claim of alert condition %s kept changing: retry", ErrNotSaved, key)
}
