package vault

import "context"

// admission bounds how many requests do CPU work at once. Without it, a
// burst of requests (hundreds of connections, two cores) preempts whoever
// holds a record lock and commits stall behind crypto for seconds. A request
// gives its slot back while it waits for a commit, so that waiting requests
// still form one batch.
type admission chan struct{}

type slotKey struct{}

// slot is one request's claim on an admission place.
type slot struct {
	a    admission
	held bool
}

func (a admission) enter(ctx context.Context) (context.Context, *slot, error) {
	select {
	case a <- struct{}{}:
	case <-ctx.Done():
		return ctx, nil, ctx.Err()
	}
	s := &slot{a: a, held: true}
	return context.WithValue(ctx, slotKey{}, s), s, nil
}

func (s *slot) leave() {
	if s != nil && s.held {
		<-s.a
		s.held = false
	}
}

// commit waits for the store to commit, without holding an admission slot.
func (v *Vault) commit(ctx context.Context) (uint64, error) {
	s, _ := ctx.Value(slotKey{}).(*slot)
	if s != nil && s.held {
		<-s.a
		s.held = false
		defer func() {
			s.a <- struct{}{}
			s.held = true
		}()
	}
	return v.store.Commit(ctx)
}
