package simulator_test

import (
	"bytes"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/idemhq/idem/payd/internal/provider"
	"github.com/idemhq/idem/payd/internal/simulator"
)

// twoCharges returns the bytes of a state file that holds two charges
// and a refund of the first: its header, then a line for each.
func twoCharges(t *testing.T) []byte {
	t.Helper()
	path := statePath(t)
	sim, a := start(t, &simulator.Config{StateFile: path})
	ch := as[provider.Charge](t, a.charge("k1", 1000))
	a.charge("k2", 2000)
	a.refund("r1", ch.ID, 100)
	sim.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(data, []byte("\n")); n != 4 {
		t.Fatalf("the state file has %d lines, want 4:\n%s", n, data)
	}
	return data
}

// lines splits a state file into its lines, each with its newline.
func lines(data []byte) [][]byte {
	return bytes.SplitAfter(data, []byte("\n"))[:bytes.Count(data, []byte("\n"))]
}

// TestStateTornTailIsDropped: what a crash can leave of the record being
// written (part of it, all but its newline, zeros where its pages did
// not reach the disk) is dropped, with a warning, and the file cut back
// to its whole records. The ids carry on from those, and the next record
// follows them, so a later open loads it.
func TestStateTornTailIsDropped(t *testing.T) {
	ls := lines(twoCharges(t))
	charges, refund := bytes.Join(ls[:3], nil), ls[3] // the header and the two charges; the refund
	zeroedStart := append(make([]byte, 20), refund[20:]...)
	for _, tt := range []struct {
		name    string
		tail    []byte // after the two charges
		refunds int    // loaded
	}{
		{"half a record", refund[:len(refund)/2], 0},
		{"a record without its newline", refund[:len(refund)-1], 0},
		{"zeros in place of a record", make([]byte, len(refund)), 0},
		{"a record whose first bytes are zeros", zeroedStart, 0},
		{"zeros after a whole record", append(bytes.Clone(refund), make([]byte, 64)...), 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := statePath(t)
			file := append(bytes.Clone(charges), tt.tail...)
			good := charges
			if tt.refunds == 1 {
				good = append(bytes.Clone(charges), refund...)
			}
			if err := os.WriteFile(path, file, 0o600); err != nil {
				t.Fatal(err)
			}
			var log bytes.Buffer
			sim, a := start(t, &simulator.Config{StateFile: path, Logger: slog.New(slog.NewTextHandler(&log, nil))})
			if n, m := len(sim.Charges()), len(sim.Refunds()); n != 2 || m != tt.refunds {
				t.Fatalf("loaded %d charges, %d refunds; want 2 and %d", n, m, tt.refunds)
			}
			if !strings.Contains(log.String(), "torn") {
				t.Errorf("no warning about the torn tail in the log:\n%s", log.String())
			}
			if data, _ := os.ReadFile(path); !bytes.Equal(data, good) {
				t.Errorf("the file after the open:\n%q\nwant its whole records:\n%q", data, good)
			}
			next := as[provider.Charge](t, a.charge("k3", 300))
			sim.Close()
			again, _ := start(t, &simulator.Config{StateFile: path})
			if got := again.Charges(); next.ID != "ch_000003" || len(got) != 3 || got[2].ID != next.ID {
				t.Errorf("made %s after the open; the next open loads %+v, want ch_000003 last", next.ID, got)
			}
		})
	}
}

// TestStateDamageIsRefused: a file that is not a state file, or a state
// file damaged where no crash of ours damages it, is refused and left as
// it is: better no simulator than one that gives out ids or answers it
// should not.
func TestStateDamageIsRefused(t *testing.T) {
	ls := lines(twoCharges(t))
	header, c1, c2, r1 := ls[0], ls[1], ls[2], ls[3]
	mangled := bytes.Replace(c1, []byte(`"amount"`), []byte(`"amount`), 1)
	strayRefund := bytes.Replace(r1, []byte("ch_000001"), []byte("ch_000009"), 1)
	for _, tt := range []struct {
		name string
		file [][]byte
		want string // in the error
	}{
		{"a database", [][]byte{[]byte("SQLite format 3\x00\x10\x00\x02\x02\x00@  \x00\x00\x00\x01\n"), c1}, "not a simulator state file"},
		{"a damaged record with more after it", [][]byte{header, mangled, c2}, "damaged and more follow"},
		{"charges out of order", [][]byte{header, c2, c1}, "charge ch_000002"},
		{"a charge twice", [][]byte{header, c1, c1}, "charge ch_000001"},
		{"a refund of a charge not made", [][]byte{header, c1, c2, strayRefund}, `refund re_000001 of 100 does not fit what is left of charge "ch_000009"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := statePath(t)
			file := bytes.Join(tt.file, nil)
			if err := os.WriteFile(path, file, 0o600); err != nil {
				t.Fatal(err)
			}
			sim, err := simulator.Open(&simulator.Config{StateFile: path})
			if err == nil {
				sim.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("Open = %v, want an error naming the file and %q", err, tt.want)
			}
			if data, _ := os.ReadFile(path); !bytes.Equal(data, file) {
				t.Errorf("the refused file was changed to:\n%q", data)
			}
		})
	}
}

// TestStateStartsAfresh: a missing file, an empty one, and one that holds
// only part of the header (torn as it was created) start a simulator with
// nothing made, and become a state file.
func TestStateStartsAfresh(t *testing.T) {
	const header = `{"idem_simulator_state":1}` + "\n"
	for name, content := range map[string][]byte{
		"missing":        nil,
		"empty":          {},
		"half a header":  []byte(header[:10]),
		"a zeroed start": append(make([]byte, 5), header[5:12]...),
	} {
		t.Run(name, func(t *testing.T) {
			path := statePath(t)
			if content != nil {
				if err := os.WriteFile(path, content, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			sim, a := start(t, &simulator.Config{StateFile: path})
			if n := len(sim.Charges()); n != 0 {
				t.Fatalf("loaded %d charges, want none", n)
			}
			a.charge("k", 100)
			if data, _ := os.ReadFile(path); !bytes.HasPrefix(data, []byte(header+`{"charge":{"id":"ch_000001"`)) {
				t.Errorf("the file after a charge:\n%q", data)
			}
		})
	}
}
