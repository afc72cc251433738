package scenarios

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"serverconfig-webhook/e2e/harness/controlplane"
	"serverconfig-webhook/e2e/harness/k8s"
	"serverconfig-webhook/e2e/harness/util"
)

// The team namespace of fault-kill-mid-rollout: fkServers Servers on one
// team ServerConfig whose name exists nowhere else.
const (
	fkNS      = "fault-kill-team"
	fkConfig  = "fk-config"
	fkServers = 32
)

func fkServerName(i int) string { return fmt.Sprintf("fk-%02d", i) }

// fkRolled counts the StatefulSets of fkNS whose template has want.
func (s *Suite) fkRolled(ctx context.Context, want map[string]string) (int, error) {
	l, err := s.CP.Kube.AppsV1().StatefulSets(fkNS).List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, sts := range l.Items {
		if k8s.SameImages(k8s.TemplateImages(sts.Spec.Template.Spec), want) {
			n++
		}
	}
	return n, nil
}

// fkWaitAllRolled polls (90 s at most) until every StatefulSet of fkNS has
// want; it returns how many had it last.
func (s *Suite) fkWaitAllRolled(ctx context.Context, want map[string]string) (int, error) {
	var n int
	err := util.PollEvery(90*time.Second, 50*time.Millisecond, func() error {
		var err error
		if n, err = s.fkRolled(ctx, want); err != nil {
			return err
		}
		if n != fkServers {
			return fmt.Errorf("%d of %d rolled out", n, fkServers)
		}
		return nil
	})
	return n, err
}

// scenarioFaultKillMidRollout: fkServers Servers; their team ServerConfig
// changes, so the sync loop rolls out every StatefulSet; the webhook
// (serve --sync) is killed with SIGKILL once a quarter of them carry the
// new images, and started again. Every StatefulSet must end as the webhook
// renders it now (a dry-run update through the API server, which calls the
// webhook, changes nothing), each written by the sync loop exactly once
// (audit log: no rollout redone, none lost), and no StatefulSet write may
// fail after the restart (the writes in flight at the kill fail: counted). The stand-in controller is stopped before the change, so that the
// sync loop is the only writer of the StatefulSets while the webhook is
// down (with failurePolicy Fail, a controller write in that gap would fail
// for want of any webhook, which is the webhook-down scenario's subject).
// Figure: time from the restart until all are rolled out.
func scenarioFaultKillMidRollout(ctx context.Context, s *Suite) error {
	const sc = "fault-kill-mid-rollout"
	if err := s.needWebhook(ctx); err != nil {
		return err
	}
	if err := s.CP.EnsureNamespace(ctx, fkNS); err != nil {
		return err
	}
	c, err := s.StartStandInController(ctx, fkNS)
	if err != nil {
		return err
	}
	defer c.Stop() // Stop is idempotent: the scenario stops it earlier
	team := s.teamConfig(fkNS, fkConfig)
	if err := s.Apply(ctx, team); err != nil {
		return err
	}
	for i := 0; i < fkServers; i++ {
		if err := s.Apply(ctx, k8s.NewServer(fkNS, fkServerName(i), fkConfig, 1, nil)); err != nil {
			return err
		}
	}
	defer func() {
		for i := 0; i < fkServers; i++ {
			_ = s.deleteServer(ctx, fkNS, fkServerName(i))
		}
		_ = s.deleteSC(ctx, fkNS, fkConfig)
	}()
	if _, _, err := s.waitSC(ctx, k8s.ControllerNS, fkConfig, true, 30*time.Second); err != nil {
		return fmt.Errorf("setup: no placeholder: %w", err)
	}
	oldImages := k8s.ExpectedImages(team)
	err = util.Poll(120*time.Second, func() error {
		n, err := s.fkRolled(ctx, oldImages)
		if err != nil {
			return err
		}
		if n != fkServers {
			return fmt.Errorf("%d of %d StatefulSets with the team's images", n, fkServers)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	c.Stop()
	time.Sleep(time.Second)

	newCfg := s.teamConfigSuffix(fkNS, fkConfig, fmt.Sprintf("-k%d", time.Now().Unix()%100000))
	newImages := k8s.ExpectedImages(newCfg)
	// a watch sees each rollout as it is stored: the kill follows the
	// quarter's within one event
	w, err := s.CP.Kube.AppsV1().StatefulSets(fkNS).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	t0 := time.Now()
	if err := s.Apply(ctx, newCfg); err != nil {
		w.Stop()
		return err
	}
	rolled := map[string]bool{}
	timeout := time.After(60 * time.Second)
	for len(rolled) < fkServers/4 {
		var ev watch.Event
		var ok bool
		select {
		case ev, ok = <-w.ResultChan():
		case <-timeout:
			ok = false
		}
		if !ok {
			w.Stop()
			return fmt.Errorf("%d of %d rolled out within 60 s of the change, before the kill", len(rolled), fkServers)
		}
		if sts, isSTS := ev.Object.(*appsv1.StatefulSet); isSTS && k8s.SameImages(k8s.TemplateImages(sts.Spec.Template.Spec), newImages) {
			rolled[sts.Name] = true
		}
	}
	s.WH.Proc.Kill()
	s.WH.Proc = nil
	w.Stop()
	tKill := time.Since(t0)
	atKill, err := s.fkRolled(ctx, newImages)
	if err != nil {
		return err
	}
	util.Step("%s: SIGKILL of the webhook %s after the change, %d of %d StatefulSets rolled out", sc, secs(tKill), atKill, fkServers)
	s.r.Check(checkName(sc, "killed-midway"), atKill >= fkServers/4 && atKill < fkServers,
		"%d of %d StatefulSets rolled out when the webhook was killed (%s after the change)", atKill, fkServers, secs(tKill))
	time.Sleep(time.Second)
	stillKilled, _ := s.fkRolled(ctx, newImages)

	tRestart := time.Now()
	if err := s.WH.Start(); err != nil {
		return fmt.Errorf("restart after SIGKILL: %w", err)
	}
	ready := time.Since(tRestart)
	n, err := s.fkWaitAllRolled(ctx, newImages)
	took := time.Since(tRestart)
	s.r.Check(checkName(sc, "all-rolled-out-after-restart"), err == nil,
		"%d of %d StatefulSets with the new images %s after the restart (ready after %s; %d rolled out while it was down) %v", n, fkServers, secs(took), secs(ready), stillKilled, err)

	// as the webhook renders them now: a dry-run update (through the
	// webhook) of the stored object stores nothing else
	var differ []string
	for i := 0; i < fkServers; i++ {
		name := fkServerName(i)
		sts, err := s.CP.GetSTS(ctx, fkNS, name)
		if err != nil {
			return err
		}
		dry, err := s.CP.Kube.AppsV1().StatefulSets(fkNS).Update(ctx, sts.DeepCopy(), metav1.UpdateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			differ = append(differ, fmt.Sprintf("%s: dry-run update: %v", name, err))
			continue
		}
		d := JSONDiff(sts.Spec, dry.Spec) + JSONDiff(k8s.WebhookAnnotations(sts.ObjectMeta), k8s.WebhookAnnotations(dry.ObjectMeta))
		if d != "" {
			differ = append(differ, name+": "+d)
		}
	}
	s.r.Check(checkName(sc, "as-the-webhook-renders"), len(differ) == 0,
		"%d of %d StatefulSets differ from what the webhook renders now: %s", len(differ), fkServers, strings.Join(differ, "; "))

	// the audit log: one write per StatefulSet, none failed
	evs, err := s.CP.AuditEvents(t0, func(e controlplane.AuditEvent) bool {
		return e.ObjectRef.Resource == "statefulsets" && e.ObjectRef.Namespace == fkNS && e.ObjectRef.Subresource == ""
	})
	if err != nil {
		return err
	}
	writes := map[string]int{}
	// each write as "verb by user at t (relative to the restart)", for the
	// message of a StatefulSet written more than once
	seen := map[string][]string{}
	// cut: a write of the sync loop broke off by the kill; the API server
	// may still have stored it (it answers 504 and finishes the write)
	cut := map[string]bool{}
	var failed, inFlight, redone []string
	for _, e := range evs {
		if e.ResponseStatus.Code >= 300 {
			f := fmt.Sprintf("%s %s (%d, dry run %v)", e.Verb, e.ObjectRef.Name, e.ResponseStatus.Code, e.DryRun())
			// the sync loop's patches in flight at the SIGKILL: the API
			// server's call to the webhook broke off (500/504)
			if e.StageTimestamp.Before(tRestart) {
				inFlight = append(inFlight, f)
				cut[e.ObjectRef.Name] = true
			} else {
				failed = append(failed, f)
			}
			continue
		}
		if e.DryRun() || e.Verb == "get" {
			continue
		}
		writes[e.ObjectRef.Name]++
		seen[e.ObjectRef.Name] = append(seen[e.ObjectRef.Name], fmt.Sprintf("%s by %s at %+.3f s", e.Verb, e.User.Username, e.StageTimestamp.Sub(tRestart).Seconds()))
	}
	var never []string
	for i := 0; i < fkServers; i++ {
		name := fkServerName(i)
		switch n := writes[name]; {
		case n == 0 && !cut[name]:
			never = append(never, name)
		case n > 1:
			redone = append(redone, fmt.Sprintf("%s %d times: %s", name, n, strings.Join(seen[name], ", ")))
		}
	}
	sort.Strings(redone)
	s.r.Check(checkName(sc, "each-written-once"), len(redone) == 0 && len(never) == 0,
		"audit log since the change: %d StatefulSets written more than once (%s), %d never, not even by a write the kill broke off (%s)", len(redone), strings.Join(redone, ", "), len(never), strings.Join(never, ", "))
	s.r.Check(checkName(sc, "no-failed-admission"), len(failed) == 0,
		"%d StatefulSet requests failed after the restart: %s (%d in flight at the SIGKILL failed, each rolled out after the restart: %s)",
		len(failed), strings.Join(failed, "; "), len(inFlight), strings.Join(inFlight, "; "))
	util.Step("FIGURE %s: killed with %d of %d rolled out (%s after the change, %d sync-loop writes in flight failed); all rolled out %s after the restart (ready after %s)",
		sc, atKill, fkServers, secs(tKill), len(inFlight), secs(took), secs(ready))
	return s.fkRestartAllOutOfDate(ctx, sc)
}

// fkRestartAllOutOfDate: the webhook killed, the team's ServerConfig
// changed while it is down, the webhook started again: every StatefulSet
// is out of date at once, and each is reconciled from two triggers (the
// Controller's first list, the caches' relist), so a reconcile that reads
// its store before the store shows the first one's write would write
// again. Each must be written exactly once (audit log).
func (s *Suite) fkRestartAllOutOfDate(ctx context.Context, sc string) error {
	s.WH.Proc.Kill()
	s.WH.Proc = nil
	changed := s.teamConfigSuffix(fkNS, fkConfig, fmt.Sprintf("-d%d", time.Now().Unix()%100000))
	if err := s.Apply(ctx, changed); err != nil {
		return err
	}
	want := k8s.ExpectedImages(changed)
	tRestart := time.Now()
	if err := s.WH.Start(); err != nil {
		return fmt.Errorf("restart after the change: %w", err)
	}
	n, err := s.fkWaitAllRolled(ctx, want)
	took := time.Since(tRestart)
	// the stored objects' own events have reached the audit log once the
	// last is rolled out; a write redone after that would be a second
	// reconcile's, which comes within the store's latency: wait for it
	time.Sleep(2 * time.Second)
	evs, aerr := s.CP.AuditEvents(tRestart, func(e controlplane.AuditEvent) bool {
		return e.ObjectRef.Resource == "statefulsets" && e.ObjectRef.Namespace == fkNS && e.ObjectRef.Subresource == ""
	})
	if aerr != nil {
		return aerr
	}
	writes := map[string][]string{}
	var failed []string
	for _, e := range evs {
		if e.DryRun() || e.Verb == "get" || e.Verb == "list" || e.Verb == "watch" {
			continue
		}
		if e.ResponseStatus.Code >= 300 {
			failed = append(failed, fmt.Sprintf("%s %s (%d)", e.Verb, e.ObjectRef.Name, e.ResponseStatus.Code))
			continue
		}
		writes[e.ObjectRef.Name] = append(writes[e.ObjectRef.Name], fmt.Sprintf("%s by %s at %+.3f s", e.Verb, e.User.Username, e.StageTimestamp.Sub(tRestart).Seconds()))
	}
	var wrong []string
	for i := 0; i < fkServers; i++ {
		name := fkServerName(i)
		if w := writes[name]; len(w) != 1 {
			wrong = append(wrong, fmt.Sprintf("%s %d times: %s", name, len(w), strings.Join(w, ", ")))
		}
	}
	s.r.Check(checkName(sc, "all-out-of-date-at-start-written-once"), err == nil && len(wrong) == 0 && len(failed) == 0,
		"changed while the webhook was down, %d of %d StatefulSets rolled out %s after the restart %v; %d not written exactly once (%s); %d writes failed (%s)",
		n, fkServers, secs(took), err, len(wrong), strings.Join(wrong, "; "), len(failed), strings.Join(failed, "; "))
	util.Step("FIGURE %s: all %d out of date at the restart: rolled out %s after it, %d written more or less than once", sc, fkServers, secs(took), len(wrong))
	return nil
}
