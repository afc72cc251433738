package standin

import (
	"encoding/json"

	"github.com/banzaicloud/k8s-objectmatcher/patch"
)

// How the stock controller decides whether to send an Update: the REAL
// github.com/banzaicloud/k8s-objectmatcher v1.8.0 (served by the module
// proxy) set up as Seldon does (getReconcileOperation in
// statefulset_reconciler.go 2.9.1 / deployment_reconciler.go 2.10.2): a
// three-way strategic merge between seldon.io/last-applied, the desired
// object and the stored one.

var standinPatchMaker = patch.NewPatchMaker(lastApplied, &patch.K8sStrategicMergePatcher{}, &patch.BaseJSONMergePatcher{})

// standinSTSOptions: the StatefulSet reconciler's options, in its order.
var standinSTSOptions = []patch.CalculateOption{
	patch.IgnoreStatusFields(),
	patch.IgnoreField("kind"),
	patch.IgnoreField("apiVersion"),
	patch.IgnoreField("metadata"),
	patch.IgnoreVolumeClaimTemplateTypeMetaAndStatus(),
	ignoreVolumeClaimTemplateVolumeMode(),
}

// standinDeploymentOptions: the Deployment reconciler's (2.10.2) options.
var standinDeploymentOptions = []patch.CalculateOption{
	patch.IgnoreStatusFields(),
	patch.IgnoreField("kind"),
	patch.IgnoreField("apiVersion"),
	patch.IgnoreField("metadata"),
}

// ignoreVolumeClaimTemplateVolumeMode is Seldon's
// common.IgnoreVolumeClaimTemplateVolumeModel: every claim template's
// spec.volumeMode set to "" on both sides (the API server defaults it).
func ignoreVolumeClaimTemplateVolumeMode() patch.CalculateOption {
	blank := func(b []byte) ([]byte, error) {
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, err
		}
		if spec, ok := m["spec"].(map[string]any); ok {
			if vcts, ok := spec["volumeClaimTemplates"].([]any); ok {
				for _, v := range vcts {
					if vm, ok := v.(map[string]any); ok {
						if sp, ok := vm["spec"].(map[string]any); ok {
							sp["volumeMode"] = ""
						}
					}
				}
			}
		}
		return json.Marshal(m)
	}
	return func(cur, mod []byte) ([]byte, []byte, error) {
		c, err := blank(cur)
		if err != nil {
			return nil, nil, err
		}
		m, err := blank(mod)
		return c, m, err
	}
}
