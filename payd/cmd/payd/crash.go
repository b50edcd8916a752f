package main

// crashHooks are where a crash-testing build kills payd: hit at the
// processor's and the API's named failpoints, afterSend once a provider
// request is written. Both are nil in a production build, which has no
// failpoints (crash_off.go); crash_chaos.go arms them.
type crashHooks struct {
	hit       func(point string)
	afterSend func()
}
