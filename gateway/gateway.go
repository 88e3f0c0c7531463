package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/auth"
	"github.com/sagarunner/sagarunner/instances"
	"github.com/sagarunner/sagarunner/metrics"
	"github.com/sagarunner/sagarunner/saga"
	"github.com/sagarunner/sagarunner/saga/envelope"
	"github.com/sagarunner/sagarunner/statemanager"
	"github.com/sagarunner/sagarunner/tracing"
	"github.com/sagarunner/sagarunner/ui"
)

// Deps are the gateway's collaborators.
type Deps struct {
	// Sagas supplies the trigger paths served; nil serves none.
	Sagas *saga.Set
	// Stores backs the task inbox; nil answers 503 there.
	Stores statemanager.Resolver
	// Instances backs /instances; nil (tracking off) answers 503 there.
	Instances *instances.Store
	// Client produces requests and consumes replies. It must not be in a
	// consumer group: the gateway adds the reply topic's partitions to it
	// at their end offsets, so it should be a client of its own.
	Client *kgo.Client
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Metrics may be nil.
	Metrics *metrics.Metrics
	// Ready reports whether the process is ready beyond the gateway's own
	// reply consumer (the runner consuming, no partition stuck): nil when
	// it is, otherwise an error whose text /readyz answers with. A nil
	// Ready means always ready.
	Ready func() error
	// Now defaults to time.Now; createdAt of requests comes from it.
	Now func() time.Time
	// NewID generates request ids; defaults to saga.NewID.
	NewID func() string
	// TracerProvider, when set, traces every request in a server span
	// (continuing a W3C traceparent header the caller sends); the Client
	// should then carry tracing.ProduceHook, which carries that span into
	// the records produced. Nil means tracing off.
	TracerProvider trace.TracerProvider
}

// Gateway serves HTTP. Create it with New, then call Run or Serve.
type Gateway struct {
	cfg     Config
	sagas   *saga.Set
	stores  statemanager.Resolver
	client  *kgo.Client
	log     *slog.Logger
	metrics *metrics.Metrics
	ready   func() error
	now     func() time.Time
	newID   func() string
	auth    *auth.Authenticator
	tracer  trace.Tracer // nil: tracing off

	// instances backs /instances; nil when tracking is off.
	instances *instances.Store
	// sweeping holds the path sagas with a step whose action sweeps many
	// tasks at once; over HTTP only an admin may start them.
	sweeping map[*saga.Saga]string
	// sweepingTopics holds the trigger topics of sweeping sagas: a record
	// published there over HTTP starts the sweep just as the path does.
	sweepingTopics map[string]string
	mux            *http.ServeMux
	handler        http.Handler
	ui             *ui.UI // the web inbox under /ui/

	// positioned is set once the reply consumer sits at the end of every
	// reply partition; until then a synchronous request could miss its
	// reply, so those answer 503.
	positioned atomic.Bool
	mu         sync.Mutex
	waiters    map[string]chan *envelope.Envelope
}

// New validates cfg and deps and builds the routes. A saga path that
// collides with a built-in route is an error.
func New(cfg Config, deps Deps) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Client == nil {
		return nil, errors.New("gateway: Deps.Client is required")
	}
	if g, _ := deps.Client.OptValue(kgo.ConsumerGroup).(string); g != "" {
		return nil, fmt.Errorf("gateway: Deps.Client is in consumer group %q; the reply consumer needs a client without one", g)
	}
	a, err := auth.New(cfg.Auth)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	g := &Gateway{
		cfg:     cfg,
		sagas:   deps.Sagas,
		stores:  deps.Stores,
		client:  deps.Client,
		log:     deps.Logger,
		metrics: deps.Metrics,
		ready:   deps.Ready,
		now:     deps.Now,
		newID:   deps.NewID,
		auth:    a,
		tracer:  tracing.Tracer(deps.TracerProvider),
		waiters: map[string]chan *envelope.Envelope{},
	}
	g.instances = deps.Instances
	if g.sagas == nil {
		g.sagas = &saga.Set{}
	}
	if g.log == nil {
		g.log = slog.Default()
	}
	if g.now == nil {
		g.now = time.Now
	}
	if g.newID == nil {
		g.newID = saga.NewID
	}
	g.sweeping, g.sweepingTopics = sweepingSagas(g.sagas)
	g.mux = http.NewServeMux()
	g.route("/healthz", false, map[string]http.HandlerFunc{http.MethodGet: g.healthz})
	g.route("/readyz", false, map[string]http.HandlerFunc{http.MethodGet: g.readyz})
	g.route("/metrics", false, map[string]http.HandlerFunc{http.MethodGet: g.metrics.Handler().ServeHTTP})
	g.route("/tasks", true, map[string]http.HandlerFunc{http.MethodGet: g.listTasks})
	g.route("/tasks/count", true, map[string]http.HandlerFunc{http.MethodGet: g.countTasks})
	g.route("/tasks/{domain}/{id}", true, map[string]http.HandlerFunc{http.MethodGet: g.getTask})
	g.route("/tasks/{domain}/{id}/history", true, map[string]http.HandlerFunc{http.MethodGet: g.taskHistory})
	g.route("/tasks/{domain}/{id}/{op}", true, map[string]http.HandlerFunc{http.MethodPost: g.taskOp})
	g.route("/instances", true, map[string]http.HandlerFunc{http.MethodGet: g.listInstances})
	g.route("/instances/{id}", true, map[string]http.HandlerFunc{http.MethodGet: g.getInstance})
	g.route("/instances/{id}/timeline", true, map[string]http.HandlerFunc{http.MethodGet: g.instanceTimeline})
	g.route("/instances/{id}/cancel", true, map[string]http.HandlerFunc{http.MethodPost: g.cancelInstance})
	g.route("/topics/{topic}", true, map[string]http.HandlerFunc{http.MethodPost: g.publish})
	if err := g.mountUI(); err != nil {
		return nil, err
	}
	g.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "NOT_FOUND", fmt.Sprintf("no route for %s", r.URL.Path))
	})
	errs := []error{checkTaskOps()}
	for _, p := range g.sagas.Paths() {
		if _, pattern := g.mux.Handler(&http.Request{Method: http.MethodGet, URL: &url.URL{Path: p}}); pattern != "/" {
			errs = append(errs, fmt.Errorf("gateway: saga path %q collides with the built-in route %q", p, pattern))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	g.handler = g.observe(http.HandlerFunc(g.dispatch))
	return g, nil
}

// Handler returns the gateway's HTTP handler. Synchronous saga requests
// only work while Serve or Run runs the reply consumer.
func (g *Gateway) Handler() http.Handler { return g.handler }

// AuthEnabled reports whether callers must authenticate, so start-up output
// can say when every caller is trusted.
func (g *Gateway) AuthEnabled() bool { return g.auth.Enabled() }

// Ready returns nil when the reply consumer is positioned and Deps.Ready
// agrees, and otherwise the reason the process is not ready.
func (g *Gateway) Ready() error {
	if !g.positioned.Load() {
		return errors.New("gateway: reply consumer not positioned")
	}
	if g.ready != nil {
		return g.ready()
	}
	return nil
}

// Run listens on Config.Addr and serves until ctx is done.
func (g *Gateway) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", g.cfg.Addr)
	if err != nil {
		return fmt.Errorf("gateway: listen %s: %w", g.cfg.Addr, err)
	}
	return g.Serve(ctx, ln)
}

// Serve runs the reply consumer and serves HTTP on ln until ctx is done,
// then shuts down gracefully: it stops accepting, lets requests in flight
// finish (they may still receive their replies) for up to
// Config.ShutdownTimeout, and only then stops the reply consumer. It closes
// ln. A clean shutdown returns nil.
func (g *Gateway) Serve(ctx context.Context, ln net.Listener) error {
	consumeCtx, stopConsuming := context.WithCancel(context.WithoutCancel(ctx))
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		g.consumeReplies(consumeCtx)
	}()
	defer func() {
		stopConsuming()
		<-consumed
	}()

	// Every bound is set so no client holds a connection or a goroutine
	// for longer than its request takes: slow bodies (ReadTimeout), slow
	// readers of the answer (WriteTimeout), idle keep-alives and oversized
	// headers.
	srv := &http.Server{
		Handler:           g.handler,
		ReadHeaderTimeout: min(10*time.Second, g.cfg.ReadTimeout),
		ReadTimeout:       g.cfg.ReadTimeout,
		WriteTimeout:      g.cfg.WriteTimeout,
		IdleTimeout:       g.cfg.IdleTimeout,
		MaxHeaderBytes:    g.cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	// Live streams of the web inbox never end by themselves: shutdown
	// ends them, and their feed runs as long as the server.
	srv.RegisterOnShutdown(g.ui.Shutdown)
	fed := make(chan struct{})
	go func() { defer close(fed); g.ui.Run(consumeCtx) }()
	defer func() { g.ui.Shutdown(); <-fed }()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	g.log.Info("gateway listening", "addr", ln.Addr().String(), "auth", g.auth.Enabled())

	select {
	case err := <-served:
		return fmt.Errorf("gateway: serve: %w", err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), g.cfg.ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(shutCtx)
	if serr := <-served; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("gateway: shutdown: %w", err)
	}
	return nil
}

// route registers a built-in route that answers 405 with an Allow header
// for other methods. Authenticated routes run the caller through auth
// first and hand the identity on in the request context.
func (g *Gateway) route(pattern string, authenticated bool, methods map[string]http.HandlerFunc) {
	allowed := make([]string, 0, len(methods))
	for m := range methods {
		allowed = append(allowed, m)
	}
	allow := strings.Join(allowed, ", ")
	g.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		h, ok := methods[r.Method]
		if !ok && r.Method == http.MethodHead {
			h, ok = methods[http.MethodGet]
		}
		if !ok {
			w.Header().Set("Allow", allow)
			writeError(w, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", fmt.Sprintf("%s does not accept %s", pattern, r.Method))
			return
		}
		if authenticated {
			id, ok := g.authenticate(w, r)
			if !ok {
				return
			}
			r = r.WithContext(withIdentity(r.Context(), id))
		}
		h(w, r)
	})
}

// dispatch sends saga paths to the saga handler and everything else to the
// built-in routes. Saga paths are matched exactly, outside the mux, so a
// user's path never needs escaping as a mux pattern.
func (g *Gateway) dispatch(w http.ResponseWriter, r *http.Request) {
	if s, ok := g.sagas.ByPath(r.URL.Path); ok {
		setRoute(w, s.Trigger.Path)
		switch r.Method {
		case http.MethodPost, http.MethodPut:
		default:
			w.Header().Set("Allow", "POST, PUT")
			writeError(w, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", fmt.Sprintf("%s accepts POST and PUT, not %s", s.Trigger.Path, r.Method))
			return
		}
		id, ok := g.authenticate(w, r)
		if !ok {
			return
		}
		g.startSaga(w, r, s, id)
		return
	}
	_, pattern := g.mux.Handler(r)
	if pattern == "/" {
		pattern = "unmatched"
	}
	setRoute(w, pattern)
	g.mux.ServeHTTP(w, r)
}

// authenticate answers 401 and returns false when the caller is not
// authenticated.
func (g *Gateway) authenticate(w http.ResponseWriter, r *http.Request) (auth.Identity, bool) {
	id, err := g.auth.Authenticate(r)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="sagarunner"`)
		writeError(w, http.StatusUnauthorized, auth.Code(err), err.Error())
		return auth.Identity{}, false
	}
	return id, true
}

func (g *Gateway) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (g *Gateway) readyz(w http.ResponseWriter, _ *http.Request) {
	if err := g.Ready(); err != nil {
		writeError(w, http.StatusServiceUnavailable, "NOT_READY", "not ready: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// identityKey carries the authenticated caller in a request context.
type identityKey struct{}

func withIdentity(ctx context.Context, id auth.Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

func identityOf(ctx context.Context) auth.Identity {
	id, _ := ctx.Value(identityKey{}).(auth.Identity)
	return id
}

// isAdmin reports whether the caller holds an admin role. With auth off
// nobody is, and nobody needs to be: every caller is trusted.
func (g *Gateway) isAdmin(id auth.Identity) bool {
	return g.auth.Enabled() && id.IsAdmin(g.cfg.Auth.AdminRoles)
}

// sweepingSagas finds the sagas that run an action whose spec says it
// sweeps many tasks at once, naming that action: the path sagas, and the
// trigger topics of every such saga (POST /topics/{topic} starts those as
// surely as their path would). The spec is asked, never the action's name,
// so a new sweeping action is covered by declaring it.
func sweepingSagas(set *saga.Set) (paths map[*saga.Saga]string, topics map[string]string) {
	paths, topics = map[*saga.Saga]string{}, map[string]string{}
	for _, s := range set.Sagas {
		for _, st := range s.Steps {
			if spec, ok := actions.Default.Lookup(st.ActionName); ok && spec.Sweeps {
				if s.Trigger.Path != "" {
					paths[s] = st.ActionName
				}
				if s.Trigger.Topic != "" {
					topics[s.Trigger.Topic] = st.ActionName
				}
				break
			}
		}
	}
	return paths, topics
}
