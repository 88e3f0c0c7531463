package auth

import (
	"encoding/base64"
	"errors"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const secret = "s3cret-for-tests"

func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// forged builds a token with the given header and an arbitrary signature,
// the shape of an attack that swaps the algorithm.
func forged(header, payload string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(header)) + "." + enc([]byte(payload)) + "." + enc([]byte("sig"))
}

func TestAuthenticate(t *testing.T) {
	a, err := New(Config{
		Tokens: map[string]Identity{
			"svc-token":  {User: "svc", Roles: []string{"system"}},
			"acme-token": {User: "carol", Roles: []string{"clerk"}, Tenant: "acme"},
		},
		JWT: JWT{Secret: secret, Issuer: "idp", Audience: "sagarunner"},
	})
	if err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(time.Hour).Unix()
	valid := jwt.MapClaims{"sub": "alice", "roles": []string{"manager", "admin"}, "iss": "idp", "aud": "sagarunner", "exp": future}
	with := func(k string, v any) jwt.MapClaims {
		c := jwt.MapClaims{}
		for kk, vv := range valid {
			c[kk] = vv
		}
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, valid).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		header  string
		want    Identity
		wantErr error
	}{
		{"static token", "Bearer svc-token", Identity{User: "svc", Roles: []string{"system"}}, nil},
		{"scheme is case insensitive", "bearer svc-token", Identity{User: "svc", Roles: []string{"system"}}, nil},
		{"valid jwt", "Bearer " + sign(t, jwt.SigningMethodHS256, []byte(secret), valid), Identity{User: "alice", Roles: []string{"manager", "admin"}}, nil},
		{"roles as comma string", "Bearer " + sign(t, jwt.SigningMethodHS256, []byte(secret), with("roles", "a, b")), Identity{User: "alice", Roles: []string{"a", "b"}}, nil},
		{"tenant from a static token", "Bearer acme-token", Identity{User: "carol", Roles: []string{"clerk"}, Tenant: "acme"}, nil},
		{"tenant from the jwt", "Bearer " + sign(t, jwt.SigningMethodHS256, []byte(secret), with("tenant", "acme")), Identity{User: "alice", Roles: []string{"manager", "admin"}, Tenant: "acme"}, nil},
		{"tenant of wrong type", "Bearer " + sign(t, jwt.SigningMethodHS256, []byte(secret), with("tenant", 7)), Identity{}, ErrInvalidClaims},
		{"exp is required", "Bearer " + sign(t, jwt.SigningMethodHS256, []byte(secret), with("exp", nil)), Identity{}, ErrInvalidClaims},
		{"no roles", "Bearer " + sign(t, jwt.SigningMethodHS256, []byte(secret), with("roles", nil)), Identity{User: "alice"}, nil},
		{"missing header", "", Identity{}, ErrMissingToken},
		{"basic scheme", "Basic dXNlcjpwYXNz", Identity{}, ErrMalformedToken},
		{"empty bearer", "Bearer ", Identity{}, ErrMalformedToken},
		{"unknown opaque token", "Bearer nope", Identity{}, ErrUnknownToken},
		{"garbage jwt", "Bearer a.b.c", Identity{}, ErrMalformedToken},
		{"expired", "Bearer " + sign(t, jwt.SigningMethodHS256, []byte(secret), with("exp", time.Now().Add(-time.Hour).Unix())), Identity{}, ErrExpired},
		{"bad signature", "Bearer " + sign(t, jwt.SigningMethodHS256, []byte("other"), valid), Identity{}, ErrBadSignature},
		{"alg none", "Bearer " + none, Identity{}, ErrBadSignature},
		{"alg RS256", "Bearer " + forged(`{"alg":"RS256","typ":"JWT"}`, `{"sub":"mallory"}`), Identity{}, ErrBadSignature},
		{"alg HS512 with the right secret", "Bearer " + sign(t, jwt.SigningMethodHS512, []byte(secret), valid), Identity{}, ErrBadSignature},
		{"wrong issuer", "Bearer " + sign(t, jwt.SigningMethodHS256, []byte(secret), with("iss", "evil")), Identity{}, ErrInvalidClaims},
		{"wrong audience", "Bearer " + sign(t, jwt.SigningMethodHS256, []byte(secret), with("aud", "other")), Identity{}, ErrInvalidClaims},
		{"no user claim", "Bearer " + sign(t, jwt.SigningMethodHS256, []byte(secret), with("sub", nil)), Identity{}, ErrInvalidClaims},
		{"nbf in the future", "Bearer " + sign(t, jwt.SigningMethodHS256, []byte(secret), with("nbf", time.Now().Add(time.Hour).Unix())), Identity{}, ErrExpired},
		{"exp as a string", "Bearer " + sign(t, jwt.SigningMethodHS256, []byte(secret), with("exp", "4102444800")), Identity{}, ErrInvalidClaims},
		{"user of wrong type", "Bearer " + sign(t, jwt.SigningMethodHS256, []byte(secret), with("sub", 7)), Identity{}, ErrInvalidClaims},
		{"roles with a non-string entry", "Bearer " + sign(t, jwt.SigningMethodHS256, []byte(secret), with("roles", []any{"manager", 1})), Identity{}, ErrInvalidClaims},
		{"roles of wrong type", "Bearer " + sign(t, jwt.SigningMethodHS256, []byte(secret), with("roles", 7)), Identity{}, ErrInvalidClaims},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			if tt.header != "" {
				r.Header.Set("Authorization", tt.header)
			}
			got, err := a.Authenticate(r)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil && Code(err) == "UNAUTHENTICATED" {
				t.Errorf("error %v has no specific code", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("identity = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestCustomClaims(t *testing.T) {
	a, err := New(Config{JWT: JWT{Secret: secret, UserClaim: "preferred_username", RolesClaim: "groups", TenantClaim: "org"}})
	if err != nil {
		t.Fatal(err)
	}
	tok := sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"preferred_username": "bob", "sub": "x", "groups": []string{"ops"},
		"org": "acme", "tenant": "other", "exp": time.Now().Add(time.Hour).Unix()})
	got, err := a.AuthenticateToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Identity{User: "bob", Roles: []string{"ops"}, Tenant: "acme"}); !reflect.DeepEqual(got, want) {
		t.Fatalf("identity = %+v, want %+v", got, want)
	}
	if _, err := a.AuthenticateToken("opaque"); !errors.Is(err, ErrMalformedToken) {
		t.Fatalf("opaque token with only JWT configured: err = %v, want malformed", err)
	}
}

func TestStaticOnly(t *testing.T) {
	a, err := New(Config{Tokens: map[string]Identity{"t1": {User: "u1"}}})
	if err != nil {
		t.Fatal(err)
	}
	tok := sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"sub": "alice"})
	if _, err := a.AuthenticateToken(tok); !errors.Is(err, ErrUnknownToken) {
		t.Fatalf("JWT without a configured secret: err = %v, want unknown token", err)
	}
}

func TestDisabledTrustsEveryone(t *testing.T) {
	a, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if a.Enabled() {
		t.Fatal("no tokens and no secret must disable auth")
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer whatever")
	id, err := a.Authenticate(r)
	if err != nil || !reflect.DeepEqual(id, Identity{}) {
		t.Fatalf("got %+v, %v; want empty identity, nil", id, err)
	}
	var nilAuth *Authenticator
	if nilAuth.Enabled() {
		t.Fatal("nil Authenticator must be disabled")
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr bool
	}{
		{"empty", Config{}, false},
		{"token without user", Config{Tokens: map[string]Identity{"t": {}}}, true},
		{"empty token", Config{Tokens: map[string]Identity{"": {User: "u"}}}, true},
		{"issuer without secret", Config{JWT: JWT{Issuer: "idp"}}, true},
		{"jwt", Config{JWT: JWT{Secret: "s", Issuer: "idp"}}, false},
		{"empty admin role", Config{AdminRoles: []string{""}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && (tt.cfg.JWT.UserClaim != "sub" || tt.cfg.JWT.RolesClaim != "roles" || tt.cfg.JWT.TenantClaim != "tenant") {
				t.Fatalf("defaults not filled: %+v", tt.cfg.JWT)
			}
		})
	}
}

func TestOptionalExp(t *testing.T) {
	noExp := jwt.MapClaims{"sub": "alice"}
	for _, tc := range []struct {
		name     string
		optional bool
		wantErr  error
	}{
		{"required by default", false, ErrInvalidClaims},
		{"accepted when configured optional", true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := New(Config{JWT: JWT{Secret: secret, OptionalExp: tc.optional}})
			if err != nil {
				t.Fatal(err)
			}
			_, err = a.AuthenticateToken(sign(t, jwt.SigningMethodHS256, []byte(secret), noExp))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			// An expired token stays refused either way.
			expired := jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(-time.Minute).Unix()}
			if _, err := a.AuthenticateToken(sign(t, jwt.SigningMethodHS256, []byte(secret), expired)); !errors.Is(err, ErrExpired) {
				t.Fatalf("expired: err = %v", err)
			}
		})
	}
}

func TestTokenMap(t *testing.T) {
	const secretToken = "tok-Secret-123"
	tests := []struct {
		name    string
		list    []StaticToken
		wantErr string
		wantLen int
	}{
		{"distinct", []StaticToken{{"a", Identity{User: "u1"}}, {"b", Identity{User: "u2", Tenant: "acme"}}}, "", 2},
		{"duplicate", []StaticToken{{secretToken, Identity{User: "u1"}}, {"b", Identity{User: "u2"}}, {secretToken, Identity{User: "root"}}},
			"tokens[2] repeats tokens[0]", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := TokenMap(tt.list)
			if tt.wantErr == "" {
				if err != nil || len(m) != tt.wantLen {
					t.Fatalf("map %v err %v", m, err)
				}
				if m["b"].Tenant != "acme" {
					t.Fatalf("tenant lost: %+v", m["b"])
				}
				return
			}
			if !errors.Is(err, ErrDuplicateToken) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), secretToken) {
				t.Fatalf("the error prints the token: %v", err)
			}
		})
	}
}

func TestIsAdmin(t *testing.T) {
	id := Identity{User: "alice", Roles: []string{"clerk", "ops"}}
	for _, tc := range []struct {
		name  string
		roles []string
		want  bool
	}{
		{"holds one", []string{"admin", "ops"}, true},
		{"holds none", []string{"admin"}, false},
		{"no admin roles configured", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := id.IsAdmin(tc.roles); got != tc.want {
				t.Fatalf("IsAdmin(%v) = %v", tc.roles, got)
			}
		})
	}
}
