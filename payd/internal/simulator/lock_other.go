//go:build !unix

package simulator

import "os"

// lockFile does nothing where flock(2) is missing: keep one simulator per
// state file by hand there.
func lockFile(*os.File) error { return nil }

// syncDir does nothing where a directory cannot be synced.
func syncDir(string) error { return nil }
