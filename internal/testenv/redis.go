package testenv

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// RedisServer starts a private redis-server on a free local port, with
// extra arguments (such as "--maxmemory-policy", "allkeys-lru"), and returns
// its address. It keeps nothing on disk beyond a temporary directory and is
// killed when the test ends. Tests that change server state use one, and
// never touch the shared server's configuration.
func RedisServer(t testing.TB, args ...string) string {
	t.Helper()
	server := lookPath(t, "redis-server")
	return startRedis(t, server, freePorts(t, 1)[0], args...)
}

// RedisCluster starts a Redis Cluster of three masters from the
// redis-server binary, on free local ports, and returns their addresses.
func RedisCluster(t testing.TB) []string {
	t.Helper()
	server, cli := lookPath(t, "redis-server"), lookPath(t, "redis-cli")
	var addrs []string
	for _, port := range freePorts(t, 3) {
		addrs = append(addrs, startRedis(t, server, port,
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	create := exec.CommandContext(ctx, cli, append(append([]string{"--cluster", "create"}, addrs...),
		"--cluster-replicas", "0", "--cluster-yes")...)
	if out, err := create.CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, addr := range addrs {
		host, port, _ := net.SplitHostPort(addr)
		for {
			out, err := exec.CommandContext(ctx, cli, "-h", host, "-p", port, "cluster", "info").Output()
			if err == nil && strings.Contains(string(out), "cluster_state:ok") {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("cluster node %s never reported cluster_state:ok: %v\n%s", addr, err, out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return addrs
}

func lookPath(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		Missing(t, "the "+name+" binary", err)
	}
	return path
}

// startRedis runs redis-server on port with no persistence and waits until
// it accepts connections.
func startRedis(t testing.TB, server string, port int, args ...string) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(server, append([]string{
		"--bind", "127.0.0.1", "--port", strconv.Itoa(port),
		"--save", "", "--appendonly", "no", "--dir", dir,
	}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server on port %d: %v", port, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := waitDial(ctx, addr); err != nil {
		t.Fatalf("redis-server on %s did not start: %v\n%s", addr, err, out.String())
	}
	return addr
}

// freePorts picks n ports that are free along with the cluster bus ports
// Redis would use (port+10000).
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries > 200 {
			t.Fatal("no free port pairs for a Redis Cluster")
		}
		p := 20000 + rand.IntN(20000)
		if free(p) && free(p+10000) {
			ports = append(ports, p)
		}
	}
	return ports
}

func free(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

func waitDial(ctx context.Context, addr string) error {
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
