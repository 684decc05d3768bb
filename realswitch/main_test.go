package realswitch

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The switch under test and the binary built for the run, set once by TestMain.
var (
	eslAddr     string // MEDIAFORK_TEST_ESL
	eslPassword string // MEDIAFORK_TEST_ESL_PASSWORD, default ClueCon
	fsCli       string // MEDIAFORK_TEST_FS_CLI: fs_cli's path, or ""
	binary      string // mediafork, built for this run
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	eslAddr = os.Getenv("MEDIAFORK_TEST_ESL")
	eslPassword = cmp.Or(os.Getenv("MEDIAFORK_TEST_ESL_PASSWORD"), "ClueCon")
	fsCli = os.Getenv("MEDIAFORK_TEST_FS_CLI")
	if eslAddr == "" {
		if os.Getenv("CI") == "true" {
			fmt.Fprintln(os.Stderr, "FAIL realswitch: CI=true and MEDIAFORK_TEST_ESL is not set: CI runs the TestRealSwitch tests against a real FreeSWITCH (see .ci/run)")
			return 1
		}
		fmt.Println("realswitch: TestRealSwitch… skipped: set MEDIAFORK_TEST_ESL=host:port of a FreeSWITCH from ../shared/freeswitch/dist to run them")
		return 0
	}
	// Set and unreachable is a failure everywhere: whoever set it wanted the tests.
	if err := checkSwitch(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL realswitch: MEDIAFORK_TEST_ESL=%s: %v\n", eslAddr, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "mediafork-realswitch-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL realswitch:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if binary, err = build(dir); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL realswitch:", err)
		return 1
	}
	return m.Run()
}

// checkSwitch answers whether the switch is there and is the one the tests
// need: ESL accepts the password, both media modules are loaded and the
// dialplan has the extensions the tests call.
func checkSwitch() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dialESL(ctx, eslAddr, eslPassword)
	if err != nil {
		return err
	}
	defer c.close()
	for _, mod := range []string{"mod_audio_fork", "mod_audio_stream", "mod_loopback", "mod_tone_stream"} {
		out, aerr := c.api(ctx, "module_exists "+mod)
		if aerr != nil {
			return aerr
		}
		if strings.TrimSpace(out) != "true" {
			return fmt.Errorf("%s is not loaded (module_exists: %q): use the FreeSWITCH of ../shared/freeswitch/dist", mod, out)
		}
	}
	out, err := c.api(ctx, "xml_locate dialplan context name default")
	if err != nil {
		return err
	}
	for _, ext := range []string{"9000", "9001", "9102"} {
		if !strings.Contains(out, ext) {
			return fmt.Errorf("the dialplan (context default) has no extension %s: use the dialplan of ../shared/freeswitch/dist", ext)
		}
	}
	return nil
}

// build makes the mediafork binary once for every test, with the race
// detector when the tests have it, so a race in the daemon under real traffic
// fails the test that caused it.
func build(dir string) (string, error) {
	bin := filepath.Join(dir, "mediafork")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "github.com/mediafork/mediafork/cmd/mediafork")
	start := time.Now()
	out, err := exec.Command("go", args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	fmt.Printf("realswitch: built mediafork (race=%v) in %s; FreeSWITCH at %s\n", raceEnabled, time.Since(start).Round(time.Millisecond), eslAddr)
	return bin, nil
}
