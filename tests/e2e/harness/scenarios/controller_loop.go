package scenarios

import (
	"context"
	"sync"
	"sync/atomic"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
)

// ControllerLoop is the stand-in controller's watch on the StatefulSet it
// owns: every change of the stored object makes it reconcile again (send its
// full desired object), as the stock controller's Owns() watch does. A
// webhook that is not an exact fixed point turns this into a write loop.
type ControllerLoop struct {
	events  atomic.Int64
	mu      sync.Mutex
	changes []string
	prev    *appsv1.StatefulSet
	cancel  context.CancelFunc
	done    chan struct{}
	once    sync.Once
}

func (s *Suite) StartControllerLoop(ctx context.Context, ns, name string) (*ControllerLoop, error) {
	cur, err := s.CP.GetSTS(ctx, ns, name)
	if err != nil {
		return nil, err
	}
	lctx, cancel := context.WithCancel(ctx)
	w, err := s.CP.Kube.AppsV1().StatefulSets(ns).Watch(lctx, metav1.ListOptions{
		FieldSelector: "metadata.name=" + name, ResourceVersion: cur.ResourceVersion,
	})
	if err != nil {
		cancel()
		return nil, err
	}
	l := &ControllerLoop{prev: cur, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		defer w.Stop()
		for {
			select {
			case <-lctx.Done():
				return
			case ev, ok := <-w.ResultChan():
				if !ok {
					return
				}
				if ev.Type != watch.Modified {
					continue
				}
				l.events.Add(1)
				if obj, ok := ev.Object.(*appsv1.StatefulSet); ok {
					l.mu.Lock()
					l.changes = append(l.changes, changed(l.prev, obj))
					l.prev = obj
					l.mu.Unlock()
				}
				_, _, _ = s.StandIn.Reconcile(lctx, ns, name)
			}
		}
	}()
	return l, nil
}

func (l *ControllerLoop) Events() int64 { return l.events.Load() }

func (l *ControllerLoop) Changes() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.changes...)
}

func (l *ControllerLoop) Stop() {
	l.once.Do(func() {
		l.cancel()
		<-l.done
	})
}
