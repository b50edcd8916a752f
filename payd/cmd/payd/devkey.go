package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/idemhq/idem/payd/internal/payments"
)

// devAccountID is the account of the dev key: the one --api-key names, or
// the one embedded payd makes on its first start.
const devAccountID = "acct_dev"

// devKey is what payd serve's start did about the dev account's key.
type devKey struct {
	// shown is the key to print: the one kept beside a SQLite database,
	// printed at each start; never a key the operator gave.
	shown string
	// note says, when there is no key to show, how to reach the API.
	note string
}

// ensureDevKey makes the dev account and its key at start, and never
// changes a key that exists (TestStartupNeverChangesAKey):
//   - with --api-key, that key becomes a key of acct_dev if it is none yet;
//   - else, on SQLite, the key kept in a file beside the database, readable
//     by its owner only, made on the first start and printed at each one
//     (TestDevKeySurvivesRestarts);
//   - else there is none: the operator makes accounts and keys with payd
//     accounts.
//
// A worker serves no API and touches no key (TestTwoMerchants).
func ensureDevKey(ctx context.Context, store *payments.Store, cfg serveConfig, log *slog.Logger) (devKey, error) {
	if !cfg.runsAPI() {
		return devKey{}, nil
	}
	if cfg.apiKey != "" {
		return devKey{note: "the dev account's key is the one given with --api-key or PAYD_API_KEY"},
			store.EnsureAccount(ctx, devAccountID, "dev", cfg.apiKey)
	}
	path := devKeyFile(store.Dialect(), cfg.databaseURL)
	if path == "" {
		return devKey{note: "no dev key: make an account and its key with payd accounts create"}, nil
	}
	key, made, err := readOrMakeDevKey(path, log)
	if err != nil {
		return devKey{}, err
	}
	if made {
		warnOfOtherKeys(ctx, store, path, log)
	}
	err = store.EnsureAccount(ctx, devAccountID, "dev", key)
	if errors.Is(err, payments.ErrKeyRevoked) {
		log.Warn("payd: the dev key kept beside the database was revoked; payd starts without it", slog.String("file", path))
		return devKey{note: "the dev key in " + path + " was revoked: make another with payd keys create --account " + devAccountID}, nil
	}
	return devKey{shown: key}, err
}

// devKeyFile is where the dev key of a SQLite database at url is kept, or
// "" where there is no file to keep it beside: PostgreSQL, a SQLite URI.
func devKeyFile(dialect, url string) string {
	if dialect != "sqlite" || strings.HasPrefix(url, "file:") || strings.Contains(url, "?") || url == ":memory:" {
		return ""
	}
	return url + ".dev-key"
}

// readOrMakeDevKey returns the key in path, made and written there, mode
// 0600, if the file does not exist. The file is written before the key is
// stored, so a key in the database is always one the file holds.
func readOrMakeDevKey(path string, log *slog.Logger) (key string, made bool, err error) {
	for attempt := 0; ; attempt++ {
		key, err = readDevKey(path, log)
		if !errors.Is(err, fs.ErrNotExist) {
			return key, false, err
		}
		if attempt > 0 {
			return "", false, fmt.Errorf("the dev key file %s neither exists nor can be made: remove what is in its place", path)
		}
		key = payments.NewAPIKey()
		made, err = writeNewFile(path, key+"\n")
		if err != nil {
			return "", false, fmt.Errorf("keep the dev key beside the database, in %s: %w", path, err)
		}
		if made {
			return key, true, nil
		}
		// Another payd made it first, or something is in the way.
	}
}

// readDevKey returns the key kept in path, a regular file (not a link)
// holding one key, or an error wrapping fs.ErrNotExist if there is none
// (TestDevKeyFileIsChecked).
func readDevKey(path string, log *slog.Logger) (string, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		return "", fmt.Errorf("read the dev key in %s: it must be a regular file, not a link; remove it to make a new key: %w", path, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil || !info.Mode().IsRegular() || info.Size() > 1024 {
		return "", fmt.Errorf("the dev key file %s must be a regular file of one key: remove it to make a new key", path)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return "", fmt.Errorf("read the dev key in %s: %w", path, err)
	}
	key := strings.TrimSuffix(string(b), "\n")
	if err := payments.CheckAPIKey(key); err != nil {
		return "", fmt.Errorf("the dev key file %s does not hold a key payd made (%w): remove it to make a new key, and revoke the old one with payd keys revoke", path, err)
	}
	if info.Mode().Perm()&0o077 != 0 {
		log.Warn("payd: the dev key file is readable by others than its owner: chmod 600 it", slog.String("file", path))
	}
	return key, nil
}

// writeNewFile writes content to path, mode 0600, whole or not at all: it
// is written to a file of its own, synced, then linked at path, which
// fails if path exists. It reports false, and writes nothing, if it does.
func writeNewFile(path, content string) (bool, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*")
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(content)
	if err = errors.Join(err, tmp.Chmod(0o600), tmp.Sync(), tmp.Close()); err != nil {
		return false, err
	}
	err = os.Link(tmp.Name(), path)
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	return err == nil, err
}

// warnOfOtherKeys says, when a new dev key file was made, that the dev
// account's keys from before stay live: payd never revokes a key on its
// own, and removing the file revokes nothing.
func warnOfOtherKeys(ctx context.Context, store *payments.Store, path string, log *slog.Logger) {
	keys, err := store.Keys(ctx, devAccountID)
	live := 0
	for _, k := range keys {
		if k.RevokedAt == nil {
			live++
		}
	}
	if err == nil && live > 0 {
		log.Warn("payd: made a new dev key; the dev account's other keys stay live: revoke those you no longer use with payd keys revoke",
			slog.String("file", path), slog.Int("other_live_keys", live))
	}
}
