package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// payd reads OpenTelemetry's standard environment variables, with the
// meaning the specification gives them
// (opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables).
// The exporters and the SDK read most of them themselves, and report a
// value they cannot use to OpenTelemetry's error handler, going on with a
// default; payd checks them first, so that a bad value stops it at start
// with the variable's name (TestBadTracingVariableStopsPayd).

// tracingHelp is what payd serve --help says of tracing.
const tracingHelp = `Tracing (OpenTelemetry) is off, and costs nothing, unless an exporter is configured:
  OTEL_TRACES_EXPORTER                 otlp, console (spans as JSON lines on stdout), or both, comma-separated; none: off
  OTEL_EXPORTER_OTLP_ENDPOINT          the collector's base URL, such as http://localhost:4318; set on its own, it means otlp
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT   the full URL for traces, instead
  OTEL_EXPORTER_OTLP_PROTOCOL          http/protobuf (the default) or grpc
  OTEL_SERVICE_NAME                    the service's name in traces (default payd)
The other standard variables apply as specified: OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER and
OTEL_TRACES_SAMPLER_ARG, OTEL_EXPORTER_OTLP_[TRACES_]HEADERS, _TIMEOUT, _COMPRESSION, _INSECURE and
_CERTIFICATE, OTEL_BSP_*, OTEL_SDK_DISABLED. A value payd cannot use stops it at start, naming the variable.
payd continues a request's W3C traceparent, and sends its own to the provider.`

// traceExporters returns the exporters the environment asks for, console
// ones writing to stdout; none when tracing is off
// (TestTracingIsOffWithoutExporter).
func traceExporters(ctx context.Context, getenv func(string) string, stdout io.Writer) ([]sdktrace.SpanExporter, error) {
	names, err := exporterNames(getenv)
	if err != nil || len(names) == 0 {
		return nil, err
	}
	if err := checkVars(getenv, sdkVars); err != nil {
		return nil, err
	}
	var out []sdktrace.SpanExporter
	for _, name := range names {
		var e sdktrace.SpanExporter
		switch name {
		case "console":
			e, err = stdouttrace.New(stdouttrace.WithWriter(stdout))
		case "otlp":
			e, err = otlpExporter(ctx, getenv)
		}
		if err != nil {
			return nil, fmt.Errorf("tracing: the %s exporter: %w", name, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// exporterNames are the exporters OTEL_TRACES_EXPORTER lists or, when it
// is unset, otlp if an OTLP endpoint is set; none if tracing is off, as
// OTEL_SDK_DISABLED=true also makes it.
func exporterNames(getenv func(string) string) ([]string, error) {
	if err := checkVars(getenv, []otelVar{{"OTEL_SDK_DISABLED", isBool}}); err != nil {
		return nil, err
	}
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return nil, nil
	}
	list := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER"))
	if list == "" {
		if getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" {
			return []string{"otlp"}, nil
		}
		return nil, nil
	}
	var names []string
	for name := range strings.SplitSeq(list, ",") {
		name = strings.ToLower(strings.TrimSpace(name))
		switch {
		case name == "none" && list != "none":
			return nil, varError("OTEL_TRACES_EXPORTER", list, "none turns tracing off, and cannot be listed with an exporter")
		case name == "none":
		case name == "otlp" || name == "console":
			if !slices.Contains(names, name) {
				names = append(names, name)
			}
		default:
			return nil, varError("OTEL_TRACES_EXPORTER", list, fmt.Sprintf("%q is not an exporter payd has: otlp, console or none", name))
		}
	}
	return names, nil
}

// otlpExporter is the OTLP exporter for the protocol the environment
// names, which reads the OTEL_EXPORTER_OTLP_* variables itself. Neither
// protocol connects before its first export: a collector that is down
// delays no start.
func otlpExporter(ctx context.Context, getenv func(string) string) (sdktrace.SpanExporter, error) {
	if err := checkVars(getenv, otlpVars()); err != nil {
		return nil, err
	}
	protocol := strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"))
	if protocol == "" {
		protocol = strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_PROTOCOL"))
	}
	if protocol == "grpc" {
		return otlptracegrpc.New(ctx)
	}
	return otlptracehttp.New(ctx)
}

// An otelVar is a variable and what makes its value usable: check says
// what is wrong with one that is not.
type otelVar struct {
	name  string
	check func(value string) string
}

// checkVars checks the variables of vars that are set.
func checkVars(getenv func(string) string, vars []otelVar) error {
	for _, v := range vars {
		value := getenv(v.name)
		if value == "" {
			continue
		}
		if problem := v.check(strings.TrimSpace(value)); problem != "" {
			return varError(v.name, value, problem)
		}
	}
	return nil
}

func varError(name, value, problem string) error {
	return fmt.Errorf("tracing: %s=%q: %s", name, value, problem)
}

// sdkVars are the SDK's variables that payd checks when it traces.
var sdkVars = []otelVar{
	{"OTEL_TRACES_SAMPLER", oneOf("always_on", "always_off", "traceidratio", "parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio")},
	{"OTEL_TRACES_SAMPLER_ARG", isRatio},
	{"OTEL_RESOURCE_ATTRIBUTES", isPairs},
	{"OTEL_BSP_SCHEDULE_DELAY", isCount},
	{"OTEL_BSP_EXPORT_TIMEOUT", isCount},
	{"OTEL_BSP_MAX_QUEUE_SIZE", isCount},
	{"OTEL_BSP_MAX_EXPORT_BATCH_SIZE", isCount},
}

// otlpVars are the OTLP exporter's variables, each both for every signal
// and for traces alone.
func otlpVars() []otelVar {
	var vars []otelVar
	for _, v := range []otelVar{
		{"ENDPOINT", isURL},
		{"PROTOCOL", oneOf("http/protobuf", "grpc")},
		{"HEADERS", isPairs},
		{"TIMEOUT", isCount},
		{"COMPRESSION", oneOf("gzip", "none")},
		{"INSECURE", isBool},
		{"CERTIFICATE", isFile},
		{"CLIENT_CERTIFICATE", isFile},
		{"CLIENT_KEY", isFile},
	} {
		vars = append(vars, otelVar{"OTEL_EXPORTER_OTLP_" + v.name, v.check}, otelVar{"OTEL_EXPORTER_OTLP_TRACES_" + v.name, v.check})
	}
	return vars
}

func oneOf(values ...string) func(string) string {
	return func(v string) string {
		if slices.Contains(values, strings.ToLower(v)) {
			return ""
		}
		return "want one of " + strings.Join(values, ", ")
	}
}

func isBool(v string) string {
	if strings.EqualFold(v, "true") || strings.EqualFold(v, "false") {
		return ""
	}
	return "want true or false"
}

func isCount(v string) string {
	if n, err := strconv.Atoi(v); err != nil || n < 0 {
		return "want a whole number, 0 or more"
	}
	return ""
}

func isRatio(v string) string {
	if f, err := strconv.ParseFloat(v, 64); err != nil || f < 0 || f > 1 {
		return "want a sampling ratio from 0 to 1"
	}
	return ""
}

func isURL(v string) string {
	if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "want an absolute http:// or https:// URL"
	}
	return ""
}

// isPairs checks a list of key=value, comma-separated, values
// percent-encoded.
func isPairs(v string) string {
	for pair := range strings.SplitSeq(v, ",") {
		key, value, ok := strings.Cut(pair, "=")
		if _, err := url.PathUnescape(strings.TrimSpace(value)); !ok || strings.TrimSpace(key) == "" || err != nil {
			return fmt.Sprintf("want key=value pairs, comma-separated, values percent-encoded; not %q", pair)
		}
	}
	return ""
}

func isFile(v string) string {
	f, err := os.Open(v)
	if err != nil {
		return "cannot read the file: " + err.Error()
	}
	f.Close()
	return ""
}
