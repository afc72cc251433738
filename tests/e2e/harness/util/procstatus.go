package util

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ProcStatus is what the scenarios read of /proc/PID/status.
type ProcStatus struct {
	RSSKiB, HWMKiB int64 // VmRSS, VmHWM
	Threads        int
}

// ReadProcStatus reads VmRSS, VmHWM and Threads of process pid; a status
// without VmRSS is an error (the process is gone or a zombie).
func ReadProcStatus(pid int) (ProcStatus, error) {
	var st ProcStatus
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return st, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			st.RSSKiB = v
		case "VmHWM:":
			st.HWMKiB = v
		case "Threads:":
			st.Threads = int(v)
		}
	}
	if st.RSSKiB == 0 {
		return st, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
	}
	return st, nil
}
