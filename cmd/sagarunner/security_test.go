package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/config"
	"github.com/sagarunner/sagarunner/internal/app"
	"github.com/sagarunner/sagarunner/internal/redistest"
	"github.com/sagarunner/sagarunner/saga"
)

func TestSigningKey(t *testing.T) {
	_, rdb := redistest.Start(t)
	ctx := context.Background()
	cfg, err := config.Load("", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("runners sharing a Redis share one drawn key", func(t *testing.T) {
		first, err := app.SigningKey(ctx, cfg, rdb)
		if err != nil {
			t.Fatal(err)
		}
		second, err := app.SigningKey(ctx, cfg, rdb)
		if err != nil {
			t.Fatal(err)
		}
		if len(first) != 32 || !bytes.Equal(first, second) {
			t.Fatalf("keys %x and %x", first, second)
		}
		stored, err := rdb.Get(ctx, app.SigningKeyRedisKey).Bytes()
		if err != nil || !bytes.Equal(stored, first) {
			t.Fatalf("stored %x, %v", stored, err)
		}
	})
	t.Run("a configured key is used as given", func(t *testing.T) {
		c := *cfg
		c.Runner.SigningKey = strings.Repeat("k", 40)
		got, err := app.SigningKey(ctx, &c, rdb)
		if err != nil || string(got) != c.Runner.SigningKey {
			t.Fatalf("key %q, %v", got, err)
		}
	})
	t.Run("a short configured key is refused without printing it", func(t *testing.T) {
		c := *cfg
		c.Runner.SigningKey = "Short-Secret"
		_, err := app.SigningKey(ctx, &c, rdb)
		if err == nil || strings.Contains(err.Error(), "Short-Secret") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("a short stored key is refused", func(t *testing.T) {
		if err := rdb.Set(ctx, app.SigningKeyRedisKey, "short", 0).Err(); err != nil {
			t.Fatal(err)
		}
		if _, err := app.SigningKey(ctx, cfg, rdb); err == nil || !strings.Contains(err.Error(), "delete it") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestAuthConfig(t *testing.T) {
	cfg, err := config.Load("", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Auth.Tokens = []config.Token{{Token: "Tok-Secret", User: "a", Tenant: "acme"}, {Token: "Tok-Secret", User: "b"}}
	if _, err := app.AuthConfig(cfg); err == nil || !strings.Contains(err.Error(), "tokens[1] repeats tokens[0]") || strings.Contains(err.Error(), "Tok-Secret") {
		t.Fatalf("duplicate tokens: err = %v", err)
	}
	cfg.Auth.Tokens = cfg.Auth.Tokens[:1]
	cfg.Auth.AdminRoles = []string{"ops"}
	got, err := app.AuthConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got.Tokens["Tok-Secret"].Tenant != "acme" || got.JWT.OptionalExp || got.JWT.TenantClaim != "tenant" || got.AdminRoles[0] != "ops" {
		t.Fatalf("auth config %+v", got)
	}
}

func TestPublishTopics(t *testing.T) {
	cfg, err := config.Load("", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.HTTP.PublishTopics = []string{"orders"}
	set, err := saga.LoadBytes(actions.Default, "t.yaml", []byte(`
saga: a
trigger: {topic: job-posts}
steps: [{id: done, action: Finish}]
---
saga: b
trigger: {topic: sagarunner-requests}
steps: [{id: done, action: Finish}]
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		withSagas bool
		want      string
	}{
		{"run: only the configured ones", false, "orders"},
		{"dev: and the sagas' trigger topics, never an internal one", true, "orders,job-posts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := strings.Join(app.PublishTopics(cfg, set, tc.withSagas), ","); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}
