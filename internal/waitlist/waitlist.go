// Package waitlist keeps the local waiters of a store by key, for stores
// whose notifications arrive on one shared channel (a Redis subscription, a
// PostgreSQL LISTEN connection) and must be routed to the waiters of one
// record.
package waitlist

import "sync"

// List is a set of waiters by key. The zero value is ready to use.
type List struct {
	mu    sync.Mutex
	byKey map[string]map[chan struct{}]struct{}
}

// Add registers a waiter for key. The channel receives a value (it never
// blocks the sender) when key is woken. Remove it when done.
func (l *List) Add(key string) chan struct{} {
	ch := make(chan struct{}, 1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byKey == nil {
		l.byKey = make(map[string]map[chan struct{}]struct{})
	}
	set := l.byKey[key]
	if set == nil {
		set = make(map[chan struct{}]struct{})
		l.byKey[key] = set
	}
	set[ch] = struct{}{}
	return ch
}

// Remove unregisters a waiter returned by Add.
func (l *List) Remove(key string, ch chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.byKey[key], ch)
	if len(l.byKey[key]) == 0 {
		delete(l.byKey, key)
	}
}

// Wake signals every waiter of key.
func (l *List) Wake(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for ch := range l.byKey[key] {
		signal(ch)
	}
}

// WakeAll signals every waiter, as after a lost notification channel.
func (l *List) WakeAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, set := range l.byKey {
		for ch := range set {
			signal(ch)
		}
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
