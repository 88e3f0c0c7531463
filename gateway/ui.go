package gateway

import (
	"net/http"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sagarunner/sagarunner/ui"
)

// mountUI serves the web inbox under ui.Prefix. The UI is a client of this
// gateway's own API, called in process: it has no rules of its own, so a
// page shows and an action does exactly what the API would for the same
// caller. Its live feed reads with a Kafka client of its own, made from
// this gateway's client options, outside any consumer group.
func (g *Gateway) mountUI() error {
	u, err := ui.New(g.cfg.UI, ui.Deps{
		API:          http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { g.handler.ServeHTTP(w, r) }),
		Authenticate: g.auth.AuthenticateToken,
		AuthEnabled:  g.auth.Enabled(),
		AdminRoles:   g.cfg.Auth.AdminRoles,
		NewFeedClient: func(opts ...kgo.Opt) (*kgo.Client, error) {
			return kgo.NewClient(append(g.client.Opts(), opts...)...)
		},
		Logger: g.log,
		Now:    g.now,
	})
	if err != nil {
		return err
	}
	g.ui = u
	g.mux.Handle(ui.Prefix, u.Handler())
	g.mux.Handle("GET /ui", http.RedirectHandler(ui.Prefix, http.StatusMovedPermanently))
	return nil
}
