// Splits `helm template` output into the kustomize base and checks the
// rendered deploy objects and the Dockerfile (run by tests/deploy/check.sh).
module serverconfig-webhook/deploy/checker

go 1.24.0

require sigs.k8s.io/yaml v1.6.0

require (
	cel.dev/expr v0.19.1 // indirect
	github.com/antlr4-go/antlr/v4 v4.13.0 // indirect
	github.com/stoewer/go-strcase v1.2.0 // indirect
	golang.org/x/exp v0.0.0-20230515195305-f3d0a9c9a5cc // indirect
	google.golang.org/genproto/googleapis/api v0.0.0-20240826202546-f6391c0de4c7 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20240826202546-f6391c0de4c7 // indirect
	google.golang.org/protobuf v1.34.2 // indirect
)

require (
	github.com/google/cel-go v0.23.2
	github.com/moby/patternmatcher v0.6.0
	go.yaml.in/yaml/v2 v2.4.2 // indirect
)
