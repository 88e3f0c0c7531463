package metrics

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// dashboardFile is the Grafana dashboard shipped for these metrics.
const dashboardFile = "../docs/grafana-dashboard.json"

// capturing records every collector New registers.
type capturing struct {
	prometheus.Registerer
	collectors []prometheus.Collector
}

func (c *capturing) Register(col prometheus.Collector) error {
	c.collectors = append(c.collectors, col)
	return c.Registerer.Register(col)
}

// registeredNames returns the names New registers. A vector without
// children is not gathered, so the names are read from the descriptors;
// Desc has no accessor for its name, and its String form has carried it
// as fqName: "..." for every client_golang release.
func registeredNames(t *testing.T) map[string]bool {
	t.Helper()
	reg := &capturing{Registerer: prometheus.NewRegistry()}
	New(reg)
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	names := map[string]bool{}
	for _, c := range reg.collectors {
		ch := make(chan *prometheus.Desc, 16)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			m := fqName.FindStringSubmatch(d.String())
			if m == nil {
				t.Fatalf("descriptor without a name: %s", d)
			}
			names[m[1]] = true
		}
	}
	if len(names) == 0 {
		t.Fatal("New registered nothing")
	}
	return names
}

type dashboardPanel struct {
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Datasource json.RawMessage `json:"datasource"`
	Targets    []struct {
		Expr       string          `json:"expr"`
		Datasource json.RawMessage `json:"datasource"`
	} `json:"targets"`
	Panels []dashboardPanel `json:"panels"`
}

// TestDashboardQueriesRegisteredMetrics: the dashboard parses, takes its
// datasource from the DS_PROMETHEUS variable, and every metric it queries
// is one New registers, so a renamed metric cannot leave an empty panel.
func TestDashboardQueriesRegisteredMetrics(t *testing.T) {
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title      string `json:"title"`
		UID        string `json:"uid"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query string `json:"query"`
			} `json:"list"`
		} `json:"templating"`
		Panels []dashboardPanel `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.Title == "" || d.UID == "" {
		t.Errorf("dashboard lacks a title or uid")
	}
	hasDS := false
	for _, v := range d.Templating.List {
		hasDS = hasDS || v.Name == "DS_PROMETHEUS" && v.Type == "datasource" && v.Query == "prometheus"
	}
	if !hasDS {
		t.Error("no datasource variable DS_PROMETHEUS of type prometheus")
	}

	names := registeredNames(t)
	metricName := regexp.MustCompile(`\b` + Namespace + `_[a-z0-9_]+`)
	queried := map[string]bool{}
	var walk func([]dashboardPanel)
	walk = func(ps []dashboardPanel) {
		for _, p := range ps {
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if !strings.Contains(string(p.Datasource), "${DS_PROMETHEUS}") {
				t.Errorf("panel %q datasource %s, want ${DS_PROMETHEUS}", p.Title, p.Datasource)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q queries nothing", p.Title)
			}
			for _, tg := range p.Targets {
				if !strings.Contains(string(tg.Datasource), "${DS_PROMETHEUS}") {
					t.Errorf("panel %q target datasource %s, want ${DS_PROMETHEUS}", p.Title, tg.Datasource)
				}
				found := metricName.FindAllString(tg.Expr, -1)
				if len(found) == 0 {
					t.Errorf("panel %q: %q names no %s metric", p.Title, tg.Expr, Namespace)
				}
				for _, n := range found {
					if !registered(names, n) {
						t.Errorf("panel %q queries %s, which New does not register", p.Title, n)
					}
					queried[n] = true
				}
			}
		}
	}
	walk(d.Panels)

	// The dashboard covers what operators asked for.
	for _, want := range []string{
		"sagarunner_records_consumed_total", "sagarunner_step_duration_seconds_bucket", "sagarunner_tasks_waiting",
		"sagarunner_tasks_closed_total", "sagarunner_timer_lateness_seconds_bucket", "sagarunner_dead_lettered_total",
		"sagarunner_retries_total", "sagarunner_consumer_lag_records", "sagarunner_oldest_uncommitted_seconds",
	} {
		if !queried[want] {
			t.Errorf("no panel queries %s", want)
		}
	}
}

// registered reports whether n is a registered name, or a histogram's
// series of one.
func registered(names map[string]bool, n string) bool {
	if names[n] {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(n, suffix); ok && names[base] {
			return true
		}
	}
	return false
}
