package controlplane

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"serverconfig-webhook/e2e/harness/util"
)

// The traces scenarios' OTLP receiver: the pinned OpenTelemetry Collector
// (tests/e2e/peers/otelcol-v*, built by xtask) with the OTLP gRPC
// receiver on a loopback port and the file exporter writing OTLP JSON, one
// export request per line, to a file the scenarios read.

// Collector is one running collector.
type Collector struct {
	GRPCPort int    // the OTLP/gRPC receiver's port on 127.0.0.1
	File     string // the file exporter's output (OTLP JSON lines)
	Proc     *util.Proc
}

const collectorConfig = `receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:%d
exporters:
  file:
    path: %s
    flush_interval: 100ms
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
`

// StartCollector starts bin with a config in dir and waits until its
// receiver accepts connections.
func StartCollector(bin, dir, logDir string, wait time.Duration) (*Collector, error) {
	if bin == "" {
		return nil, errors.New("no collector binary given (--otelcol; cargo xtask e2e builds it)")
	}
	c := &Collector{GRPCPort: util.MustFreePort(), File: filepath.Join(dir, "otel-traces.jsonl")}
	cfgPath := filepath.Join(dir, "otelcol.yaml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(collectorConfig, c.GRPCPort, c.File)), 0o644); err != nil {
		return nil, err
	}
	util.Step("otelcol: starting on 127.0.0.1:%d, spans to %s", c.GRPCPort, c.File)
	p, err := util.StartProc("otelcol", logDir, bin, []string{"--config=file:" + cfgPath}, nil)
	if err != nil {
		return nil, err
	}
	c.Proc = p
	addr := fmt.Sprintf("127.0.0.1:%d", c.GRPCPort)
	if err := waitFor(wait, p, "otelcol OTLP receiver", func() error {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		return conn.Close()
	}); err != nil {
		return nil, err
	}
	return c, nil
}

// Endpoint is the receiver as an OTLP/gRPC URL (OTEL_EXPORTER_OTLP_ENDPOINT).
func (c *Collector) Endpoint() string { return fmt.Sprintf("http://127.0.0.1:%d", c.GRPCPort) }

// Stop ends the collector.
func (c *Collector) Stop() { c.Proc.Stop(5 * time.Second) }

// Span is one exported span, with its resource's service.name and its
// attributes as strings (OTLP JSON's typed values flattened).
type Span struct {
	Service      string
	TraceID      string
	SpanID       string
	ParentSpanID string
	Name         string
	Kind         int
	Attrs        map[string]string
}

// otlpValue is OTLP JSON's AnyValue, as far as spans here use it
// (intValue is a string in OTLP JSON: 64-bit integers).
type otlpValue struct {
	StringValue *string          `json:"stringValue"`
	IntValue    *json.RawMessage `json:"intValue"`
	BoolValue   *bool            `json:"boolValue"`
	DoubleValue *float64         `json:"doubleValue"`
}

type otlpKeyValue struct {
	Key   string    `json:"key"`
	Value otlpValue `json:"value"`
}

type otlpTraces struct {
	ResourceSpans []struct {
		Resource struct {
			Attributes []otlpKeyValue `json:"attributes"`
		} `json:"resource"`
		ScopeSpans []struct {
			Spans []struct {
				TraceID      string         `json:"traceId"`
				SpanID       string         `json:"spanId"`
				ParentSpanID string         `json:"parentSpanId"`
				Name         string         `json:"name"`
				Kind         int            `json:"kind"`
				Attributes   []otlpKeyValue `json:"attributes"`
			} `json:"spans"`
		} `json:"scopeSpans"`
	} `json:"resourceSpans"`
}

func (v otlpValue) String() string {
	switch {
	case v.StringValue != nil:
		return *v.StringValue
	case v.IntValue != nil:
		return strings.Trim(string(*v.IntValue), `"`)
	case v.BoolValue != nil:
		return strconv.FormatBool(*v.BoolValue)
	case v.DoubleValue != nil:
		return strconv.FormatFloat(*v.DoubleValue, 'g', -1, 64)
	}
	return ""
}

func attrMap(kvs []otlpKeyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[kv.Key] = kv.Value.String()
	}
	return m
}

// Spans reads every span exported so far. A last line still being
// written is skipped (the next read has it); any other unreadable line is
// an error.
func (c *Collector) Spans() ([]Span, error) {
	f, err := os.Open(c.File)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Span
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	var pending error
	for sc.Scan() {
		if pending != nil {
			return nil, pending
		}
		line := sc.Bytes()
		if len(strings.TrimSpace(string(line))) == 0 {
			continue
		}
		var t otlpTraces
		if err := json.Unmarshal(line, &t); err != nil {
			pending = fmt.Errorf("%s: not OTLP JSON: %w", c.File, err)
			continue
		}
		for _, rs := range t.ResourceSpans {
			service := attrMap(rs.Resource.Attributes)["service.name"]
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					out = append(out, Span{
						Service: service, TraceID: s.TraceID, SpanID: s.SpanID, ParentSpanID: s.ParentSpanID,
						Name: s.Name, Kind: s.Kind, Attrs: attrMap(s.Attributes),
					})
				}
			}
		}
	}
	return out, sc.Err()
}

// TracingConfig writes kube-apiserver's --tracing-config-file for the
// collector: every request sampled (1,000,000 per million). The API group
// is v1 from 1.34 on (where the configuration went GA), v1beta1 before.
func TracingConfig(dir string, minor int, c *Collector) (string, error) {
	version := "v1beta1"
	if minor >= 34 {
		version = "v1"
	}
	text := fmt.Sprintf(`apiVersion: apiserver.config.k8s.io/%s
kind: TracingConfiguration
endpoint: 127.0.0.1:%d
samplingRatePerMillion: 1000000
`, version, c.GRPCPort)
	p := filepath.Join(dir, "apiserver-tracing.yaml")
	return p, os.WriteFile(p, []byte(text), 0o644)
}
