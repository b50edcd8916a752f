package main

import "net"

// crashHooks are where a crash-testing build kills payd: hit at the
// processor's and the API's named failpoints, afterSend once a provider
// request is written; and listener, which wraps the API's listener so a
// failpoint can make it fail. All are nil in a production build, which
// has no failpoints (crash_off.go); crash_chaos.go arms them.
type crashHooks struct {
	hit       func(point string)
	afterSend func()
	listener  func(net.Listener) net.Listener
}

// wrapListener is ln, wrapped by the listener hook if there is one.
func (h crashHooks) wrapListener(ln net.Listener) net.Listener {
	if h.listener == nil || ln == nil {
		return ln
	}
	return h.listener(ln)
}
