package simulator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// stateHeader is the first line of every state file: what the file is,
// and the version of its format.
const stateHeader = `{"idem_simulator_state":1}` + "\n"

// journal is a state file: stateHeader, then one record per line, in the
// order the changes were made. Each record is written and synced before
// its change is made, one at a time, so a crash can tear at most the last
// one, which was never answered; openJournal drops such a tail and
// refuses a file damaged anywhere else. The file is locked while open, so
// two simulators never share one.
type journal struct {
	f    *os.File
	path string
	size int64 // the bytes written and synced: the header and whole records
	// broken, once set, refuses every later append: the file may end in a
	// partial record.
	broken error
}

// openJournal opens the state file at path, creating it if missing, locks
// it, and returns it with the records it holds and the length of the torn
// tail it dropped, if any.
func openJournal(path string) (*journal, []record, int, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("simulator: open state file: %w", err)
	}
	j := &journal{f: f, path: path}
	recs, torn, err := j.read()
	if err != nil {
		f.Close()
		return nil, nil, 0, fmt.Errorf("simulator: state file %s: %w", path, err)
	}
	return j, recs, torn, nil
}

// read locks the file and reads it. A file that is empty, or holds only
// part of the header (torn as it was created), is started afresh.
func (j *journal) read() ([]record, int, error) {
	if err := lockFile(j.f); err != nil {
		return nil, 0, err
	}
	data, err := io.ReadAll(j.f)
	if err != nil {
		return nil, 0, err
	}
	if !bytes.HasPrefix(data, []byte(stateHeader)) {
		if !tornHeader(data) {
			return nil, 0, errors.New("not a simulator state file: it does not begin with " + stateHeader[:len(stateHeader)-1])
		}
		return nil, 0, j.create()
	}
	recs, good, err := readRecords(data[len(stateHeader):])
	if err != nil {
		return nil, 0, err
	}
	j.size = int64(len(stateHeader) + good)
	torn := len(data) - int(j.size)
	if torn > 0 {
		if err := errors.Join(j.f.Truncate(j.size), j.f.Sync()); err != nil {
			return nil, 0, fmt.Errorf("drop the torn record at its end: %w", err)
		}
	}
	return recs, torn, nil
}

// tornHeader reports whether data is what a crash can leave of a header
// being written: no longer than the header, each byte the header's own or
// zero. Any other file is someone else's, never to be overwritten.
func tornHeader(data []byte) bool {
	if len(data) > len(stateHeader) {
		return false
	}
	for i, b := range data {
		if b != 0 && b != stateHeader[i] {
			return false
		}
	}
	return true
}

// create writes the header of a new file and syncs it and its directory,
// so that the file outlives a crash.
func (j *journal) create() error {
	err := j.f.Truncate(0)
	if err == nil {
		_, err = j.f.WriteAt([]byte(stateHeader), 0)
	}
	if err == nil {
		err = j.f.Sync()
	}
	if err == nil {
		err = syncDir(filepath.Dir(j.path))
	}
	j.size = int64(len(stateHeader))
	return err
}

// readRecords decodes the whole lines of data, one record each, and
// returns them with the length of data they fill. What follows them is a
// torn tail, dropped: a last line that does not decode or lacks its
// newline. A line that does not decode with another line after it is
// damage no crash of ours leaves, and an error.
func readRecords(data []byte) ([]record, int, error) {
	var recs []record
	off := 0
	for off < len(data) {
		line, _, whole := bytes.Cut(data[off:], []byte("\n"))
		rec, err := decodeRecord(line)
		if err == nil && whole {
			recs = append(recs, rec)
			off += len(line) + 1
			continue
		}
		if i := bytes.IndexByte(data[off:], '\n'); i >= 0 && off+i < len(data)-1 {
			return nil, 0, fmt.Errorf("record %d, at byte %d, is damaged and more follow it: %v", len(recs)+1, len(stateHeader)+off, err)
		}
		break
	}
	return recs, off, nil
}

// decodeRecord decodes one line, refusing unknown fields and anything
// after the record.
func decodeRecord(line []byte) (record, error) {
	var rec record
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rec); err != nil {
		return rec, err
	}
	if dec.InputOffset() != int64(len(line)) {
		return rec, errors.New("more after the record")
	}
	return rec, nil
}

// append writes rec at the end of the file and syncs it. If it fails, it
// takes the record back off, so that the file holds only what was synced,
// and reports kept false; if that fails too, it reports kept true (the
// record may be loaded at the next start) and refuses every later append.
func (j *journal) append(rec record) (kept bool, err error) {
	if j.broken != nil {
		return false, j.broken
	}
	line, err := json.Marshal(rec)
	if err != nil {
		return false, err
	}
	line = append(line, '\n')
	if _, err = j.f.WriteAt(line, j.size); err == nil {
		err = j.f.Sync()
	}
	if err == nil {
		j.size += int64(len(line))
		return false, nil
	}
	err = fmt.Errorf("simulator: write state file %s: %w", j.path, err)
	if undo := errors.Join(j.f.Truncate(j.size), j.f.Sync()); undo != nil {
		j.broken = fmt.Errorf("simulator: state file %s may end in a partial record, so nothing more is written to it until a restart drops it: %w",
			j.path, errors.Join(err, undo))
		return true, j.broken
	}
	return false, err
}

// close closes the file, which unlocks it. A nil journal does nothing.
func (j *journal) close() {
	if j != nil {
		j.f.Close()
	}
}
