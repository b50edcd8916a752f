package waitlist

import "testing"

func TestWakeReachesOnlyTheKeysWaiters(t *testing.T) {
	var l List[int]
	a1, a2, b := l.Add("a"), l.Add("a"), l.Add("b")
	l.Wake("a", 1)
	l.Wake("a", 2) // a second wake before anyone reads must not block
	for name, ch := range map[string]chan int{"a1": a1, "a2": a2} {
		select {
		case v := <-ch:
			if v != 1 {
				t.Errorf("waiter %s got %d, want the first value sent, 1", name, v)
			}
		default:
			t.Errorf("waiter %s not woken", name)
		}
	}
	select {
	case <-b:
		t.Fatal("waiter of b woken by a's wake")
	default:
	}
	l.WakeAll(3)
	select {
	case <-b:
	default:
		t.Fatal("WakeAll did not reach b")
	}
	l.Remove("a", a1)
	l.Remove("a", a2)
	l.Remove("b", b)
	if len(l.byKey) != 0 {
		t.Fatalf("%d keys left after removing every waiter, want 0", len(l.byKey))
	}
}
