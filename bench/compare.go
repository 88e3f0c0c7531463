package bench

// Comparison is the line --compare writes for each measurement after both
// layouts have run: the cluster layout's figures beside the single
// layout's, from the same invocation.
type Comparison struct {
	// Compare is always "cluster/single": the ratios divide the cluster
	// layout's figure by the single layout's.
	Compare  string `json:"compare"`
	Scenario string `json:"scenario"`
	N        int    `json:"n"`

	SingleRate  float64 `json:"single_rate"`
	ClusterRate float64 `json:"cluster_rate"`
	RateRatio   float64 `json:"rate_ratio"`
	// The scenario's p99 latency in each layout (timeout, rss: lateness).
	SingleP99  float64 `json:"single_p99_ms"`
	ClusterP99 float64 `json:"cluster_p99_ms"`

	// CPU microseconds per step (per record, flow or deadline), summed
	// over each layout's runners and over its redis-server processes.
	SingleRunnerCPUUS  *float64 `json:"single_runner_cpu_us_per_step,omitempty"`
	ClusterRunnerCPUUS *float64 `json:"cluster_runner_cpu_us_per_step,omitempty"`
	SingleRedisCPUUS   *float64 `json:"single_redis_cpu_us_per_step,omitempty"`
	ClusterRedisCPUUS  *float64 `json:"cluster_redis_cpu_us_per_step,omitempty"`

	RedisNodes int    `json:"redis_nodes"`
	Runners    int    `json:"runners"`
	Load1      string `json:"load1,omitempty"`
}

// compareResults pairs the two layouts' lines in order, scenario by
// scenario (rss writes one line per level).
func compareResults(single, cluster []Result) []Comparison {
	var out []Comparison
	used := make([]bool, len(cluster))
	for _, s := range single {
		for j, c := range cluster {
			if used[j] || c.Scenario != s.Scenario {
				continue
			}
			used[j] = true
			cmp := Comparison{Compare: LayoutCluster + "/" + LayoutSingle, Scenario: s.Scenario, N: s.N,
				SingleRate: s.Rate, ClusterRate: c.Rate, SingleP99: s.P99, ClusterP99: c.P99,
				RedisNodes: c.RedisNodes, Runners: c.Runners, Load1: loadAverage()}
			if s.Rate > 0 {
				cmp.RateRatio = round2(c.Rate / s.Rate)
			}
			cmp.SingleRunnerCPUUS = perStep(s.RunnerCPUS, s.N)
			cmp.ClusterRunnerCPUUS = perStep(c.RunnerCPUS, c.N)
			cmp.SingleRedisCPUUS = perStep(s.RedisCPUS, s.N)
			cmp.ClusterRedisCPUUS = perStep(c.RedisCPUS, c.N)
			out = append(out, cmp)
			break
		}
	}
	return out
}

// perStep turns CPU seconds over n steps into microseconds per step.
func perStep(cpuS *float64, n int) *float64 {
	if cpuS == nil || n <= 0 {
		return nil
	}
	return ptr(round1(*cpuS * 1e6 / float64(n)))
}
