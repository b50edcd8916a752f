package main

import (
	"io"
	"os"
	"strings"
	"testing"
)

// TestReadmeIsThisProgram keeps README.md's first example true: its first
// go block must be this program's source, byte for byte, and the code block
// right after it what the program prints.
func TestReadmeIsThisProgram(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	source, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	lang, code, rest := fenced(string(readme))
	for lang != "go" && lang != "" {
		lang, code, rest = fenced(rest)
	}
	if lang == "" {
		t.Fatal("README.md has no go block")
	}
	if code != string(source) {
		t.Errorf("README.md's first go block is not examples/readme/main.go:\n--- README.md\n%s--- main.go\n%s", code, source)
	}
	lang, output, _ := fenced(rest)
	if lang != "text" {
		t.Fatalf("README.md's code block after the program is %q, want a text block of its output", lang)
	}
	if got := runMain(t); got != output {
		t.Errorf("the program prints\n%s\nREADME.md says it prints\n%s", got, output)
	}
}

// fenced returns the language and the contents of md's first fenced code
// block, and what follows the block. lang is "" if md has none.
func fenced(md string) (lang, block, rest string) {
	_, after, ok := strings.Cut("\n"+md, "\n```")
	if !ok {
		return "", "", ""
	}
	lang, after, _ = strings.Cut(after, "\n")
	block, rest, ok = strings.Cut(after, "\n```\n")
	if !ok {
		return "", "", ""
	}
	return lang, block + "\n", rest
}

// runMain runs main and returns what it printed.
func runMain(t *testing.T) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = w
	defer func() { os.Stdout = stdout }()
	printed := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		printed <- string(b)
	}()
	main()
	w.Close()
	return <-printed
}
