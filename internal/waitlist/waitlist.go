// Package waitlist keeps local waiters by key, for news that arrives on one
// shared channel and must be routed to the waiters of one key: a store's
// notifications (a Redis subscription, a PostgreSQL LISTEN connection), or
// payd's settlements.
package waitlist

import "sync"

// List is a set of waiters by key, each waiting for a value of type T. The
// zero value is ready to use.
type List[T any] struct {
	mu    sync.Mutex
	byKey map[string]map[chan T]struct{}
}

// Add registers a waiter for key. The channel receives the first value
// sent to key after Add (later ones are dropped: sending never blocks).
// Remove it when done.
func (l *List[T]) Add(key string) chan T {
	ch := make(chan T, 1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byKey == nil {
		l.byKey = make(map[string]map[chan T]struct{})
	}
	set := l.byKey[key]
	if set == nil {
		set = make(map[chan T]struct{})
		l.byKey[key] = set
	}
	set[ch] = struct{}{}
	return ch
}

// Remove unregisters a waiter returned by Add.
func (l *List[T]) Remove(key string, ch chan T) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.byKey[key], ch)
	if len(l.byKey[key]) == 0 {
		delete(l.byKey, key)
	}
}

// Wake sends v to every waiter of key.
func (l *List[T]) Wake(key string, v T) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for ch := range l.byKey[key] {
		send(ch, v)
	}
}

// WakeAll sends v to every waiter, as after a lost notification channel.
func (l *List[T]) WakeAll(v T) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, set := range l.byKey {
		for ch := range set {
			send(ch, v)
		}
	}
}

func send[T any](ch chan T, v T) {
	select {
	case ch <- v:
	default:
	}
}
