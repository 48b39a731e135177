//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package filedrop

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockName is the lock file, beside the day's CSV files. A dot file, so
// importers pass it by.
const lockName = ".spgateway.lock"

// lockDir takes the directory's lock file (an exclusive flock), which
// every process writing the directory takes before it rewrites a CSV file:
// replicas behind a load balancer, sharing the directory, rewrite the day's
// file one at a time. It returns the function that releases it.
func lockDir(dir string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return nil, fmt.Errorf("lock file: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("flock: %w", err)
	}
	return func() { f.Close() }, nil // closing the file releases the lock
}
