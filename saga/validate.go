package saga

import (
	"fmt"
	"sort"
	"strings"
)

// targets returns the step ids a step may route to, in a stable order.
func (st *Step) targets() []string {
	var out []string
	if st.Always != "" {
		out = append(out, st.Always)
	}
	keys := make([]string, 0, len(st.Next))
	for k := range st.Next {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if st.Next[k] != "" {
			out = append(out, st.Next[k])
		}
	}
	return out
}

// validateGraph checks a saga's routes: every route names a step, every step
// is reachable from the first or from the onCancel step (the two places an
// instance enters the graph), and every loop contains a waiting step.
func (l *loader) validateGraph(file string, g *Saga, name string) {
	if len(g.Steps) == 0 {
		return
	}
	ids := stepIDs(g)
	for _, st := range g.Steps {
		check := func(route, target string) {
			if target == "" {
				return
			}
			if _, ok := g.steps[target]; !ok {
				label := "next"
				if route != "" {
					label = fmt.Sprintf("next %q", route)
				}
				l.errorf(file, st.lines.route[route], 0, "step %q: %s goes to unknown step %q (steps: %s)", st.ID, label, target, strings.Join(ids, ", "))
			}
		}
		check("", st.Always)
		for route, target := range st.Next {
			check(route, target)
		}
	}

	reached := map[string]bool{g.Steps[0].ID: true}
	queue := []*Step{g.Steps[0]}
	if st, ok := g.steps[g.OnCancel]; ok && !reached[st.ID] {
		reached[st.ID] = true
		queue = append(queue, st)
	}
	for len(queue) > 0 {
		st := queue[0]
		queue = queue[1:]
		for _, t := range st.targets() {
			if next, ok := g.steps[t]; ok && !reached[t] {
				reached[t] = true
				queue = append(queue, next)
			}
		}
	}
	for _, st := range g.Steps {
		if !reached[st.ID] {
			from := fmt.Sprintf("the first step %q", g.Steps[0].ID)
			if g.OnCancel != "" && g.OnCancel != g.Steps[0].ID {
				from += fmt.Sprintf(" or the onCancel step %q", g.OnCancel)
			}
			l.errorf(file, st.Line, 0, "saga %q: step %q is unreachable from %s", name, st.ID, from)
		}
	}

	for _, loop := range cycles(g) {
		waits := false
		names := make([]string, len(loop))
		for i, st := range loop {
			names[i] = st.ID
			// A loop through a waiting action advances only when someone
			// acts, so it is a legitimate retry loop; one without would spin.
			if spec, ok := l.reg.Lookup(st.ActionName); ok && spec.Waits {
				waits = true
			}
		}
		if !waits {
			l.errorf(file, loop[0].Line, 0, "saga %q: steps %s form a loop with no waiting step (StartTask) in it, so an instance would never stop",
				name, strings.Join(append(names, names[0]), " -> "))
		}
	}
}

// cycles returns the strongly connected components of the step graph that
// contain a loop (more than one step, or a step routing to itself), each in
// file order. Tarjan's algorithm, so every loop is found in one pass.
func cycles(g *Saga) [][]*Step {
	order := map[string]int{}
	for i, st := range g.Steps {
		order[st.ID] = i
	}
	index := map[string]int{}
	low := map[string]int{}
	onStack := map[string]bool{}
	var stack []*Step
	var out [][]*Step
	next := 0
	var visit func(st *Step)
	visit = func(st *Step) {
		index[st.ID], low[st.ID] = next, next
		next++
		stack = append(stack, st)
		onStack[st.ID] = true
		for _, t := range st.targets() {
			w, ok := g.steps[t]
			if !ok {
				continue
			}
			if _, seen := index[t]; !seen {
				visit(w)
				low[st.ID] = min(low[st.ID], low[t])
			} else if onStack[t] {
				low[st.ID] = min(low[st.ID], index[t])
			}
		}
		if low[st.ID] != index[st.ID] {
			return
		}
		var comp []*Step
		for {
			w := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			onStack[w.ID] = false
			comp = append(comp, w)
			if w == st {
				break
			}
		}
		selfLoop := false
		for _, t := range st.targets() {
			selfLoop = selfLoop || t == st.ID
		}
		if len(comp) > 1 || selfLoop {
			sort.Slice(comp, func(i, j int) bool { return order[comp[i].ID] < order[comp[j].ID] })
			out = append(out, comp)
		}
	}
	for _, st := range g.Steps {
		if _, seen := index[st.ID]; !seen {
			visit(st)
		}
	}
	sort.Slice(out, func(i, j int) bool { return order[out[i][0].ID] < order[out[j][0].ID] })
	return out
}

// finish runs the checks across sagas and builds the Set, or returns every
// problem found. Versions of one name are checked each on its own (a saga
// is validated as it is parsed); across them only a (name, version) loaded
// twice is a problem. Trigger paths must be unique among the current
// versions only, since an older version's trigger starts nothing.
func (l *loader) finish() (*Set, error) {
	set := &Set{byName: map[string]*Saga{}, versions: map[string][]*Saga{}, byTopic: map[string][]*Saga{}, byPath: map[string]*Saga{}}
	for _, g := range l.sagas {
		if first, dup := set.ByVersion(g.Name, g.Version); dup {
			l.errorf(g.File, g.Line, 0, "saga %q version %d is already defined at %s:%d", g.Name, g.Version, first.File, first.Line)
			continue
		}
		set.versions[g.Name] = append(set.versions[g.Name], g)
		if cur, ok := set.byName[g.Name]; !ok || g.Version > cur.Version {
			set.byName[g.Name] = g
		}
		set.Sagas = append(set.Sagas, g)
	}
	for _, gs := range set.versions {
		sort.Slice(gs, func(i, j int) bool { return gs[i].Version < gs[j].Version })
	}
	// Indexing the triggers in load order keeps the first-defined saga as
	// the one a path conflict is reported against.
	for _, g := range set.Sagas {
		if !set.Current(g) {
			continue
		}
		if p := g.Trigger.Path; p != "" {
			if first, dup := set.byPath[p]; dup {
				l.errorf(g.File, g.Line, 0, "saga %q: trigger path %q is already served by saga %q (%s:%d)", g.Name, p, first.Name, first.File, first.Line)
				continue
			}
			set.byPath[p] = g
		}
		if t := g.Trigger.Topic; t != "" {
			set.byTopic[t] = append(set.byTopic[t], g)
		}
	}
	if len(l.errs) > 0 {
		errs := l.errs
		sort.SliceStable(errs, func(i, j int) bool {
			a, b := errs[i], errs[j]
			if a.File != b.File {
				return a.File < b.File
			}
			if a.Line != b.Line {
				return a.Line < b.Line
			}
			if a.Col != b.Col {
				return a.Col < b.Col
			}
			return a.Reason < b.Reason
		})
		return nil, &LoadError{Errors: errs}
	}
	return set, nil
}
