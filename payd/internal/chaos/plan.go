package chaos

import (
	"fmt"
	"time"
)

// plan is what the client of charge i does, drawn from the seed alone.
type plan struct {
	i         int
	key       string
	reference string
	amount    int64
	double    bool          // a double click: two requests at once
	wait      int           // Prefer: wait=N seconds; 0 for none
	timeout   time.Duration // per request
	refund    int64         // refund this much once it succeeds; 0 for none
}

func newPlan(seed uint64, i int, cfg *Config) plan {
	r := stream(seed, "client", i)
	var u [7]float64
	for k := range u {
		u[k] = r.Float64()
	}
	cents := 10 + int64(u[1]*90) // never 02 or 03, which the provider declines
	if u[2] < declinePct {
		cents = 2
	}
	p := plan{
		i:         i,
		key:       fmt.Sprintf("chaos-%x-%d", seed, i),
		reference: fmt.Sprintf("chaos_%x_%d", seed, i),
		amount:    100*(1+int64(u[0]*5000)) + cents,
		double:    u[3] < doubleClickPct,
		timeout:   cfg.ClientTimeoutMin + time.Duration(u[5]*float64(cfg.ClientTimeoutMax-cfg.ClientTimeoutMin)),
	}
	if u[4] < waitPct {
		p.wait = 1 + int(u[4]/waitPct*3)
	}
	if u[6] < refundPct {
		p.refund = max(1, p.amount/int64(2+u[6]/refundPct*3))
	}
	return p
}
