package util

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is one child process (etcd, kube-apiserver, ...). Each runs in its
// own process group so that it and anything it forks can be ended together,
// and gets SIGKILL if the harness dies (Pdeathsig).
type Proc struct {
	Name string
	Log  string
	Cmd  *exec.Cmd // the started command (its Process for pid and signals)
	done chan struct{}
	err  error
}

func StartProc(name, logDir, bin string, args, env []string) (*Proc, error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%s: binary %s: %w", name, bin, err)
	}
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, Log: logPath, Cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	procs.add(p)
	return p, nil
}

// Exited reports whether the process has ended (and how).
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Stop sends SIGTERM to the process group, then SIGKILL after grace.
func (p *Proc) Stop(grace time.Duration) {
	if p == nil {
		return
	}
	if done, _ := p.Exited(); done {
		procs.remove(p)
		return
	}
	pgid := p.Cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
	procs.remove(p)
}

// Tail returns the last n bytes of the process log, for failure messages.
func (p *Proc) Tail(n int) string {
	b, _ := os.ReadFile(p.Log)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// registry of live children, stopped in reverse start order on exit.
type registry struct {
	mu    sync.Mutex
	list  []*Proc
	hooks []func()
	once  sync.Once
}

var procs = &registry{}

func (r *registry) add(p *Proc) { r.mu.Lock(); r.list = append(r.list, p); r.mu.Unlock() }
func (r *registry) remove(p *Proc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, q := range r.list {
		if q == p {
			r.list = append(r.list[:i], r.list[i+1:]...)
			return
		}
	}
}

// AtExit registers a cleanup hook run after all children are stopped.
func AtExit(f func()) { procs.mu.Lock(); procs.hooks = append(procs.hooks, f); procs.mu.Unlock() }

// Teardown stops every child (newest first) and runs the exit hooks. Safe to
// call more than once and from the signal handler.
func Teardown() {
	procs.once.Do(func() {
		for {
			procs.mu.Lock()
			n := len(procs.list)
			var p *Proc
			if n > 0 {
				p = procs.list[n-1]
			}
			procs.mu.Unlock()
			if p == nil {
				break
			}
			p.Stop(10 * time.Second)
		}
		procs.mu.Lock()
		hooks := procs.hooks
		procs.mu.Unlock()
		for i := len(hooks) - 1; i >= 0; i-- {
			hooks[i]()
		}
	})
}

// HandleSignals tears everything down on Ctrl-C / SIGTERM / SIGHUP and exits.
func HandleSignals() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-ch
		fmt.Fprintf(os.Stderr, "\nreceived %v: tearing down\n", s)
		Teardown()
		os.Exit(130)
	}()
}

// FreePort asks the kernel for an unused loopback port.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// MustFreePort is FreePort, panicking when there is none.
func MustFreePort() int {
	p, err := FreePort()
	if err != nil {
		panic(err)
	}
	return p
}

// ProcCPU is the user + system CPU time of a running child, in seconds,
// from /proc/<pid>/stat (fields 14 and 15, in clock ticks of 1/100 s).
func ProcCPU(p *Proc) float64 {
	if p == nil || p.Cmd == nil || p.Cmd.Process == nil {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// the command name (field 2) may hold spaces: count from its ')'
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100
}

// TimevalSeconds converts a syscall.Timeval to seconds.
func TimevalSeconds(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

// Kill ends the process group with SIGKILL: no shutdown path runs (the
// Lease is not released).
func (p *Proc) Kill() {
	if p == nil {
		return
	}
	if done, _ := p.Exited(); !done {
		_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
	procs.remove(p)
}
