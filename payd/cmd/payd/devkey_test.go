package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDevKeyFileIsChecked: the dev key is read from a regular file that
// holds one key payd could have made; a link (to nothing, or to another
// file, whose content would be printed), an empty file, or one holding
// text that is no key is refused at once, saying what to do, and a
// missing file is made, 0600.
func TestDevKeyFileIsChecked(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	dir := t.TempDir()
	other := filepath.Join(dir, "passwd")
	os.WriteFile(other, []byte("root:x:0:0:root:/root:/bin/bash\n"), 0o600)
	for name, setup := range map[string]func(path string){
		"dangling link": func(path string) { os.Symlink(filepath.Join(dir, "nothing"), path) },
		"link":          func(path string) { os.Symlink(other, path) },
		"empty":         func(path string) { os.WriteFile(path, nil, 0o600) },
		"not a key":     func(path string) { os.WriteFile(path, []byte("two words and then some more\n"), 0o600) },
		"two lines": func(path string) {
			os.WriteFile(path, []byte("sk_aaaaaaaaaaaaaaaaaaaa\nsk_bbbbbbbbbbbbbbbbbbbb\n"), 0o600)
		},
		"a directory": func(path string) { os.Mkdir(path, 0o700) },
	} {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".dev-key")
		setup(path)
		start := time.Now()
		key, _, err := readOrMakeDevKey(path, log)
		if err == nil || time.Since(start) > time.Second || !strings.Contains(err.Error(), "remove") {
			t.Errorf("%s: readOrMakeDevKey = (%q, %v) after %s, want a refusal at once that says to remove it", name, key, err, time.Since(start))
		}
	}
	path := filepath.Join(dir, "new.dev-key")
	key, made, err := readOrMakeDevKey(path, log)
	info, statErr := os.Stat(path)
	if err != nil || statErr != nil || !made || !strings.HasPrefix(key, "sk_") || info.Mode().Perm() != 0o600 {
		t.Fatalf("a missing file: (%q, made %t, %v, %v); want a new key in a 0600 file", key, made, err, statErr)
	}
	if again, made, err := readOrMakeDevKey(path, log); err != nil || made || again != key {
		t.Fatalf("read again = (%q, made %t, %v), want %q", again, made, err, key)
	}
}

// TestDatabaseFileIsPrivate: the SQLite file payd makes, and the journal
// SQLite keeps beside it, are readable by their owner alone, whatever the
// umask.
func TestDatabaseFileIsPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "payd.db")
	st, err := openStorage(t.Context(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	if err := st.migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal"} {
		info, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", filepath.Base(p), info.Mode())
		}
	}
}
