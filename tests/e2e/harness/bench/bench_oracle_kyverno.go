package bench

import (
	"context"
	"encoding/json"
	"fmt"

	"serverconfig-webhook/e2e/harness/scenarios"
	"serverconfig-webhook/e2e/harness/util"
)

// The feature comparison of issue 18, in `e2e bench` with -kyverno (after
// the timed rounds, so that its namespaces weigh on no figure): every case
// of Seldon's reference output for v2.9.1 (../shared/seldon-oracle/v2.9.1/,
// as scenario_oracle.go runs them) sent as the Seldon controller through
// the webhook, then through the Kyverno ClusterPolicy alone, on the same
// API server; per case, whether the stored workload equals Seldon's own
// namespace-aware build (labels, annotations, spec). One JSON line.

const oracleSet = "v2.9.1"

// oracleCompare runs the comparison and returns its JSON line.
func (b *bench) oracleCompare(ctx context.Context) (string, error) {
	cases, err := scenarios.OracleCases(b.s.Cfg.Repo, oracleSet)
	if err != nil {
		return "", err
	}
	if len(cases) == 0 {
		return "", fmt.Errorf("oracle: no %s cases", oracleSet)
	}
	runner, err := b.s.NewOracleRunner(ctx)
	if err != nil {
		return "", err
	}
	type caseResult struct {
		Case    string `json:"case"`
		Webhook string `json:"webhook"`
		Kyverno string `json:"kyverno"`
		Detail  string `json:"kyverno_detail,omitempty"`
	}
	outcome := map[int]string{scenarios.OracleEqual: "equal", scenarios.OracleBothRefused: "refused-alike", scenarios.OracleDiffer: "differs"}
	results := make([]caseResult, len(cases))
	counts := map[string]map[string]int{"webhook": {}, "kyverno": {}}
	for _, pass := range []struct{ mode, who, prefix string }{
		{modeWebhook, "webhook", "ow-"},
		{modeKyverno, "kyverno", "ok-"},
	} {
		if err := b.switchTo(ctx, pass.mode); err != nil {
			return "", err
		}
		for i, c := range cases {
			o, detail := runner.Run(ctx, c, pass.prefix)
			results[i].Case = c.Name
			counts[pass.who][outcome[o]]++
			if pass.who == "webhook" {
				results[i].Webhook = outcome[o]
			} else {
				results[i].Kyverno = outcome[o]
				if o == scenarios.OracleDiffer {
					results[i].Detail = detail
				}
			}
		}
		util.Step("bench: oracle %s through %s: %v", oracleSet, pass.who, counts[pass.who])
	}
	line, err := json.Marshal(map[string]any{
		"bench":   "oracle-compare",
		"set":     oracleSet,
		"cases":   len(cases),
		"webhook": counts["webhook"],
		"kyverno": counts["kyverno"],
		// equal or refused alike: what the oracle scenario passes
		"webhook_matches_seldon": counts["webhook"]["equal"] + counts["webhook"]["refused-alike"],
		"kyverno_matches_seldon": counts["kyverno"]["equal"] + counts["kyverno"]["refused-alike"],
		"per_case":               results,
	})
	return string(line), err
}
