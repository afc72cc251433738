package controlplane

import (
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"serverconfig-webhook/e2e/harness/util"
)

// Balancer is a TCP relay on a loopback port standing in for what sits
// between a workload and an HA control plane: the `kubernetes` Service or a
// load balancer in front of the API servers. Each new connection goes to
// the first backend that accepts it (so a dead member is skipped, as a
// health-checked balancer does). Freeze makes every connection open at
// that moment silently stop relaying while staying open (a half-open
// connection, a stuck middlebox): what a silently stalled watch looks like
// to the client. The webhook reaches the API server through it.
type Balancer struct {
	ln       net.Listener
	mu       sync.Mutex
	backends []string
	open     map[*relay]struct{}
	closed   bool
}

// relay is one client connection and its backend connection.
type relay struct {
	client, backend net.Conn
	mu              sync.Mutex
	frozen          bool
	thaw            chan struct{} // closed when the balancer closes
}

// StartBalancer listens on a free loopback port and relays to backends
// (host:port), in order of preference.
func StartBalancer(backends ...string) (*Balancer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &Balancer{ln: ln, backends: append([]string(nil), backends...), open: map[*relay]struct{}{}}
	go b.serve()
	return b, nil
}

// Addr is the balancer's host:port.
func (b *Balancer) Addr() string { return b.ln.Addr().String() }

// URL is the balancer's https URL.
func (b *Balancer) URL() string { return "https://" + b.Addr() }

// AddBackend adds a backend after the existing ones.
func (b *Balancer) AddBackend(addr string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.backends = append(b.backends, addr)
}

// RemoveBackend drops a backend for new connections (open ones stay).
func (b *Balancer) RemoveBackend(addr string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	kept := b.backends[:0]
	for _, a := range b.backends {
		if a != addr {
			kept = append(kept, a)
		}
	}
	b.backends = kept
}

// Freeze stops relaying on every connection open now, leaving them open;
// connections made afterwards relay normally. It returns how many it froze.
func (b *Balancer) Freeze() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	for r := range b.open {
		r.mu.Lock()
		r.frozen = true
		r.mu.Unlock()
	}
	return len(b.open)
}

// Close stops the balancer and closes every connection.
func (b *Balancer) Close() {
	b.mu.Lock()
	b.closed = true
	open := b.open
	b.open = map[*relay]struct{}{}
	b.mu.Unlock()
	_ = b.ln.Close()
	for r := range open {
		r.close()
	}
}

func (b *Balancer) serve() {
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		go b.handle(c)
	}
}

// handle dials the first backend that answers and relays both ways; with
// none, the client's connection is closed (as a balancer with no healthy
// member does).
func (b *Balancer) handle(c net.Conn) {
	b.mu.Lock()
	backends := append([]string(nil), b.backends...)
	b.mu.Unlock()
	var up net.Conn
	for _, addr := range backends {
		d, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			up = d
			break
		}
	}
	if up == nil {
		_ = c.Close()
		return
	}
	r := &relay{client: c, backend: up, thaw: make(chan struct{})}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		r.close()
		return
	}
	b.open[r] = struct{}{}
	b.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { r.pipe(up, c); done <- struct{}{} }()
	go func() { r.pipe(c, up); done <- struct{}{} }()
	<-done
	// one side ended: a frozen relay keeps the other side open (silent)
	if !r.isFrozen() {
		r.close()
	}
	b.mu.Lock()
	delete(b.open, r)
	b.mu.Unlock()
}

// pipe copies src to dst until either fails; once frozen, bytes read are
// dropped and nothing more is written or closed.
func (r *relay) pipe(dst, src net.Conn) {
	buf := make([]byte, 32*1024)
	for {
		n, err := src.Read(buf)
		if r.isFrozen() {
			<-r.thaw
			return
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				return
			}
			if tc, ok := dst.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
			return
		}
	}
}

func (r *relay) isFrozen() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.frozen
}

func (r *relay) close() {
	r.mu.Lock()
	select {
	case <-r.thaw:
	default:
		close(r.thaw)
	}
	r.mu.Unlock()
	_ = r.client.Close()
	_ = r.backend.Close()
}

// String describes the balancer for a log line.
func (b *Balancer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return fmt.Sprintf("balancer %s -> %v", b.Addr(), b.backends)
}

// startVIP starts the balancer in front of the suite's kube-apiserver and a
// kubeconfig through it for the webhook.
func (cp *ControlPlane) startVIP(apiAddr string) error {
	vip, err := StartBalancer(apiAddr)
	if err != nil {
		return err
	}
	cp.VIP = vip
	util.Step("control plane: %s (the webhook's way to the API server)", vip)
	return nil
}
