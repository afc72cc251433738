package standin

import (
	"errors"
	"fmt"
	"math"
)

// ControllerMode says which stock controller the stand-in plays: Seldon
// 2.9.1 (the zero value) or 2.10.2, building StatefulSets or, with 2.10.2's
// --use-deployments-for-servers, Deployments. What differs between them,
// from the operator module at those tags:
//
//   - the user agent (controller-runtime's default: the binary name
//     "manager", its version, "v0.0.0": the trace's manager-2.9.1/v0.0.0
//     and manager-2.10.2/v0.0.0); the API server derives the field manager
//     from it (the part before "/"), since the controller sets none;
//   - the condition type (StatefulSetReady; 2.10.2 StatefulSetOrDeploymentReady);
//   - the not-found error (2.10.2 wraps it: "failed to get ServerConfig: ...");
//   - 2.10.2 validates replicas/minReplicas/maxReplicas first
//     (internal.GetValidatedScalingSpec) and, when invalid, sets the
//     condition and does not retry (a terminal error);
//   - Deployment mode writes no per-replica Services.
type ControllerMode struct {
	Version     string // "2.9.1" (default) or "2.10.2"
	Deployments bool   // 2.10.2 only
}

var (
	Mode291            = ControllerMode{Version: "2.9.1"}
	Mode2102           = ControllerMode{Version: "2.10.2"}
	Mode2102Deployment = ControllerMode{Version: "2.10.2", Deployments: true}
)

func (m ControllerMode) version() string {
	if m.Version == "" {
		return "2.9.1"
	}
	return m.Version
}

// Is2102: the mode is Seldon 2.10.2's.
func (m ControllerMode) Is2102() bool { return m.version() == "2.10.2" }

func (m ControllerMode) String() string {
	if m.Deployments {
		return m.version() + " (Deployments)"
	}
	return m.version() + " (StatefulSets)"
}

// UserAgent is the stock controller's user agent.
func (m ControllerMode) UserAgent() string { return "manager-" + m.version() + "/v0.0.0" }

// FieldManager is what the API server records for the controller's writes
// (the user agent up to "/").
func (m ControllerMode) FieldManager() string { return "manager-" + m.version() }

// ConditionType is the Server condition the controller reports the
// workload's state in.
func (m ControllerMode) ConditionType() string {
	if m.Is2102() {
		return "StatefulSetOrDeploymentReady"
	}
	return "StatefulSetReady"
}

// WorkloadKind is the kind the controller builds.
func (m ControllerMode) WorkloadKind() string {
	if m.Deployments {
		return "Deployment"
	}
	return "StatefulSet"
}

// serverConfigError is the error GetServerConfigForServer returns.
func (m ControllerMode) serverConfigError(err error) error {
	if m.Is2102() {
		return fmt.Errorf("failed to get ServerConfig: %w", err)
	}
	return err
}

// errScalingSpec is 2.10.2's internal.ErrScalingSpec.
var errScalingSpec = errors.New("scaling spec is invalid")

// validatedReplicas is the replicas the controller builds with: 2.9.1's
// Server.Default (1 when unset); 2.10.2's GetValidatedScalingSpec
// (operator/internal/utils.go), whose error is terminal.
func (m ControllerMode) validatedReplicas(spec ServerSpec) (int32, error) {
	if !m.Is2102() {
		if spec.Replicas == nil {
			return 1, nil
		}
		return *spec.Replicas, nil
	}
	replicas, minR, maxR := spec.Replicas, spec.MinReplicas, spec.MaxReplicas
	var vReplicas, vMin, vMax uint32 = 1, 0, math.MaxUint32
	if replicas == nil && minR == nil && maxR == nil {
		return 1, nil
	}
	if replicas != nil && *replicas >= 0 {
		vReplicas = uint32(*replicas)
	} else if minR != nil && *minR > 0 {
		if replicas != nil && *replicas < *minR {
			return 0, fmt.Errorf("%w: number of replicas %d cannot be less than minimum replica %d", errScalingSpec, *replicas, *minR)
		}
		vReplicas = uint32(*minR)
	}
	if minR != nil && *minR > 0 {
		vMin = uint32(*minR)
		if vReplicas < vMin {
			return 0, fmt.Errorf("%w: number of replicas %d must be >= min replicas %d", errScalingSpec, vReplicas, vMin)
		}
	}
	if maxR != nil && *maxR > 0 {
		vMax = uint32(*maxR)
		if vMin > vMax {
			return 0, fmt.Errorf("%w: min number of replicas %d must be <= max number of replicas %d", errScalingSpec, vMin, vMax)
		}
		if vReplicas > vMax {
			return 0, fmt.Errorf("%w: number of replicas %d must be <= max replicas %d", errScalingSpec, vReplicas, vMax)
		}
	}
	return int32(vReplicas), nil
}
