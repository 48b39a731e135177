package filedrop_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
)

// replicaEnv names the directory a child process (a replica) of
// TestReplicasShareADirectory delivers to, and replicaName its name.
const (
	replicaEnv  = "SPGATEWAY_FILEDROP_REPLICA_DIR"
	replicaName = "SPGATEWAY_FILEDROP_REPLICA"
	perReplica  = 40
)

// deliverAsReplica delivers perReplica events, each for its own case, as
// the replica called name.
func deliverAsReplica(t *testing.T, dir, name string) {
	a := adapter(t, dir, nil)
	var wg sync.WaitGroup
	for i := range perReplica {
		wg.Go(func() {
			deliver(t, a, event(fmt.Sprintf("%s-d%d", name, i), fmt.Sprintf("%s-task-%d", name, i), `{"n":`+strconv.Itoa(i)+`}`))
		})
	}
	wg.Wait()
}

// TestReplicaProcess is a replica of TestReplicasShareADirectory when run
// by it; otherwise it does nothing.
func TestReplicaProcess(t *testing.T) {
	dir := os.Getenv(replicaEnv)
	if dir == "" {
		t.Skip("run by TestReplicasShareADirectory")
	}
	deliverAsReplica(t, dir, os.Getenv(replicaName))
}

// TestReplicasShareADirectory: three processes (two child processes and
// this one), each with its own Adapter, deliver into one directory at once,
// as replicas sharing the provider's folder do. The day's CSV file must
// hold every delivery's row once: without the directory's lock file, one
// process's rewrite drops rows another just added.
func TestReplicasShareADirectory(t *testing.T) {
	if runtime.GOOS == "windows" || runtime.GOOS == "plan9" {
		t.Skip("no flock here: one process per directory")
	}
	dir := t.TempDir()
	var children []*exec.Cmd
	for _, name := range []string{"r1", "r2"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestReplicaProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), replicaEnv+"="+dir, replicaName+"="+name)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		children = append(children, cmd)
	}
	deliverAsReplica(t, dir, "r0")
	for _, cmd := range children {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("replica: %v", err)
		}
	}
	rows := readCSV(t, filepath.Join(dir, "cases-2025-03-04.csv"))
	seen := map[string]bool{}
	for _, row := range rows[1:] {
		if seen[row[0]] {
			t.Errorf("delivery %s has two rows", row[0])
		}
		seen[row[0]] = true
	}
	if len(seen) != 3*perReplica {
		t.Errorf("the CSV file holds %d deliveries' rows, want %d", len(seen), 3*perReplica)
	}
}
