package chaos

import (
	"context"
	"os"
	"time"
)

// teardown stops everything the run started, in order, and removes the
// database and the work directory unless told to keep them.
func (r *run) teardown(keepDB, keepDir bool) {
	for _, t := range r.targets {
		t.close()
	}
	if r.sup != nil {
		r.sup.stop()
	}
	if r.naive != nil {
		r.naive.close()
	}
	if r.forwarder != nil {
		r.forwarder.close()
	}
	for _, s := range r.sims {
		s.stop(10 * time.Second)
	}
	for _, p := range r.proxies {
		p.Close()
	}
	if r.db != nil {
		r.db.close()
	}
	r.ctl.CloseIdleConnections()
	if r.createdDB != "" {
		if keepDB {
			r.progress.say("kept database %s", r.createdDB)
		} else if err := dropDatabase(context.Background(), r.adminURL, r.createdDB); err != nil {
			r.progress.say("could not drop database %s: %v", r.createdDB, err)
		}
	}
	switch {
	case r.workDir == "":
	case keepDir || !r.tempDir:
		r.keptWorkDir = true
	default:
		os.RemoveAll(r.workDir)
		r.workDir = ""
	}
}
