package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/internal/syncbuf"
	"github.com/mediafork/mediafork/internal/testport"
)

func TestVersionCommandAndFlag(t *testing.T) {
	out, errOut, code := run(t, nil, "version")
	require.Equal(t, 0, code, errOut)
	// Version and commit depend on how the test binary was built (ldflags:
	// none here; VCS stamping: on or off); the format and platform do not.
	re := regexp.MustCompile(`^mediafork (\S+) \(commit (\S+), (go\S+), (\S+)/(\S+)\)\n$`)
	m := re.FindStringSubmatch(out)
	require.NotNil(t, m, "version printed %q", out)
	assert.Equal(t, []string{runtime.Version(), runtime.GOOS, runtime.GOARCH}, m[3:])
	for _, flag := range []string{"--version", "-v"} {
		got, errOut, code := run(t, nil, flag)
		require.Equal(t, 0, code, errOut)
		assert.Equal(t, out, got, flag)
	}
}

const (
	stampVersion = "v9.8.7-test"
	stampCommit  = "cafe1234"
)

var (
	stampedOnce sync.Once
	stamped     string
	stampedErr  error
)

// stampedBinary is mediafork linked as scripts/release.sh links it, with a
// version and commit stamped in. With -short, only the stamping: the
// binary is built as the tests' own (buildArgs), so that the cache serves
// every package and only the link runs; -trimpath would compile the whole
// tree again (minutes on a busy machine).
func stampedBinary(t *testing.T) string {
	t.Helper()
	stampedOnce.Do(func() {
		stamped = filepath.Join(filepath.Dir(binary), "mediafork-stamped")
		pkg := "github.com/mediafork/mediafork/internal/buildinfo"
		x := fmt.Sprintf("-X %s.version=%s -X %s.commit=%s", pkg, stampVersion, pkg, stampCommit)
		args := []string{"build", "-trimpath", "-o", stamped, "-ldflags", "-s -w " + x, "."}
		if testing.Short() {
			args = buildArgs("-o", stamped, "-ldflags", x, ".")
		}
		out, err := exec.Command("go", args...).CombinedOutput()
		if err != nil {
			stampedErr = fmt.Errorf("build: %v\n%s", err, out)
		}
	})
	require.NoError(t, stampedErr)
	return stamped
}

func TestVersionStampedByLdflags(t *testing.T) {
	bin := stampedBinary(t)
	want := fmt.Sprintf("mediafork %s (commit %s, %s, %s/%s)\n", stampVersion, stampCommit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, err := exec.Command(bin, args...).Output()
		require.NoError(t, err)
		assert.Equal(t, want, string(out), args)
	}
}

// notifySocket listens where a test daemon's $NOTIFY_SOCKET points, as
// systemd does for a Type=notify service; next returns the next datagram.
func notifySocket(t *testing.T) (path string, next func() string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "mfn") // short: a socket path has at most 107 bytes
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	path = filepath.Join(dir, "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return path, func() string {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(15 * time.Second)) // bounds a failure only
		buf := make([]byte, 4096)
		n, err := c.Read(buf)
		require.NoError(t, err, "no sd_notify datagram")
		return string(buf[:n])
	}
}

// notifyDaemon starts bin serve with every listener on and $NOTIFY_SOCKET
// set; it returns the process, its stderr and the listen addresses.
func notifyDaemon(t *testing.T, bin, socket string) (cmd *exec.Cmd, stderr io.Reader, ingest, api, outbound string, exited <-chan error) {
	t.Helper()
	ingest, api, outbound = testport.Reserved(t), testport.Reserved(t), testport.Reserved(t)
	cfg := writeConfig(t, fmt.Sprintf(`
freeswitch: []
outbound: {listen: "%s"}
ingest: {listen: "%s", url: "ws://%s"}
api: {listen: "%s"}
`, outbound, ingest, ingest, api))
	cmd = exec.Command(bin, "serve", "--config", cfg)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+socket)
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { err := cmd.Wait(); pw.Close(); done <- err }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		go io.Copy(io.Discard, pr) // let Wait finish copying
	})
	return cmd, pr, ingest, api, outbound, done
}

func TestSystemdNotify(t *testing.T) {
	socket, next := notifySocket(t)
	cmd, stderr, ingest, api, outbound, exited := notifyDaemon(t, binary, socket)
	var logs syncbuf.Buffer
	copied := make(chan struct{})
	go func() { defer close(copied); io.Copy(&logs, stderr) }()

	// The first thing systemd hears is READY=1, and by then every listener
	// answers: the API serves /healthz, the ingest speaks HTTP, the outbound
	// ESL listener accepts.
	assert.Equal(t, fmt.Sprintf("READY=1\nSTATUS=ingest %s, api %s, outbound ESL %s; 0 forks\n", ingest, api, outbound), next())
	resp, err := http.Get("http://" + api + "/healthz")
	require.NoError(t, err, "API not serving at READY=1")
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	resp, err = http.Get("http://" + ingest + "/not-a-fork")
	require.NoError(t, err, "ingest not serving at READY=1")
	resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	c, err := net.Dial("tcp", outbound)
	require.NoError(t, err, "outbound ESL not listening at READY=1")
	c.Close()

	// A reload is bracketed: RELOADING=1 (with the monotonic time systemd ≥ 253
	// checks), then READY=1 again.
	require.NoError(t, cmd.Process.Signal(syscall.SIGHUP))
	msg := next()
	assert.Regexp(t, `^RELOADING=1\nSTATUS=reloading the config: SIGHUP\nMONOTONIC_USEC=[1-9][0-9]*\n$`, msg)
	assert.Equal(t, fmt.Sprintf("READY=1\nSTATUS=ingest %s, api %s, outbound ESL %s; 0 forks\n", ingest, api, outbound), next())

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	assert.Equal(t, "STOPPING=1\nSTATUS=stopping: ending 0 forks\n", next())
	require.NoError(t, <-exited)
	<-copied
	assert.Contains(t, logs.String(), "mediafork stopped")
	assert.NotContains(t, logs.String(), "sd_notify failed")
}

func TestFirstLogLineAndBuildInfoGauge(t *testing.T) {
	bin := stampedBinary(t)
	socket, next := notifySocket(t)
	cmd, stderr, _, api, _, exited := notifyDaemon(t, bin, socket)
	lines := bufio.NewScanner(stderr)
	require.True(t, lines.Scan(), "no log line")
	first := lines.Text()
	go io.Copy(io.Discard, stderr)
	assert.Regexp(t, fmt.Sprintf(`^time=\S+ level=INFO msg="mediafork starting" version=%s commit=%s go=%s config=\S+$`,
		regexp.QuoteMeta(stampVersion), stampCommit, regexp.QuoteMeta(runtime.Version())), first)

	require.Contains(t, next(), "READY=1\n")
	resp, err := http.Get("http://" + api + "/metrics")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	assert.Contains(t, string(body), fmt.Sprintf("\nmediafork_build_info{commit=%q,goversion=%q,version=%q} 1\n", stampCommit, runtime.Version(), stampVersion))

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, <-exited)
	assert.True(t, strings.HasPrefix(next(), "STOPPING=1\n"))
}
