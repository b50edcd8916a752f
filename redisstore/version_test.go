package redisstore

import "testing"

func TestSupported(t *testing.T) {
	for _, tc := range []struct {
		info, version string
		ok            bool
	}{
		{"# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n", "7.0.15", true},
		{"# Server\r\nredis_version:8.2.1\r\n", "8.2.1", true},
		{"# Server\r\nredis_version:6.2.14\r\n", "6.2.14", false},
		{"# Server\r\n", "", false},
	} {
		if version, ok := supported(tc.info); version != tc.version || ok != tc.ok {
			t.Errorf("supported(%q) = %q, %t; want %q, %t", tc.info, version, ok, tc.version, tc.ok)
		}
	}
}
