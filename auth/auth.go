package auth

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// Identity is an authenticated caller. The zero Identity is the trusted,
// anonymous caller of an unauthenticated gateway.
type Identity struct {
	User  string   `json:"user,omitempty"`
	Roles []string `json:"roles,omitempty"`
	// Tenant scopes every task and instance the caller sees or touches;
	// "" is the default tenant.
	Tenant string `json:"tenant,omitempty"`
}

// Config configures an Authenticator. With no Tokens and no JWT.Secret
// authentication is off and every caller is trusted.
type Config struct {
	// Tokens maps static bearer tokens to the identity they stand for.
	Tokens map[string]Identity
	// JWT accepts HS256 JWTs.
	JWT JWT
	// AdminRoles are the roles that may act on, and see, every task of
	// their tenant, read suspended envelopes and start sweeping sagas over
	// HTTP (auth.adminRoles). Empty: nobody is an admin.
	AdminRoles []string
}

// IsAdmin reports whether the identity holds one of adminRoles. With
// authentication off the gateway trusts every caller and does not ask.
func (id Identity) IsAdmin(adminRoles []string) bool {
	for _, r := range id.Roles {
		for _, a := range adminRoles {
			if r == a {
				return true
			}
		}
	}
	return false
}

// JWT configures HS256 JWT validation. Only HS256 is accepted: a token with
// alg "none" or an asymmetric algorithm is rejected before its claims are
// read, so a forged header cannot downgrade verification.
type JWT struct {
	// Secret is the HMAC key; empty disables JWTs.
	Secret string
	// Issuer, when set, must equal the token's iss claim.
	Issuer string
	// Audience, when set, must be among the token's aud claim.
	Audience string
	// UserClaim names the claim holding the user (default "sub").
	UserClaim string
	// RolesClaim names the claim holding the roles, a JSON array of strings
	// or one comma-separated string (default "roles").
	RolesClaim string
	// TenantClaim names the claim holding the tenant, a string (default
	// "tenant"); a token without it belongs to the default tenant "".
	TenantClaim string
	// OptionalExp accepts tokens without an exp claim. The default (false)
	// refuses them: a token that never expires cannot be revoked short of
	// rotating the secret for everyone.
	OptionalExp bool
}

// StaticToken is one configured static token and the identity it stands
// for, in the order the configuration lists them.
type StaticToken struct {
	Token    string
	Identity Identity
}

// ErrDuplicateToken is returned by TokenMap when one token is listed twice.
// Two identities behind one token would make the caller's identity depend
// on which entry won, so start-up refuses it.
var ErrDuplicateToken = errors.New("auth: static token listed twice")

// TokenMap builds Config.Tokens from a list, refusing a token listed twice
// with an error that names the positions (0-based) and never the token:
// configuration errors end up in logs.
func TokenMap(list []StaticToken) (map[string]Identity, error) {
	m := make(map[string]Identity, len(list))
	first := make(map[string]int, len(list))
	var errs []error
	for i, t := range list {
		if j, dup := first[t.Token]; dup {
			errs = append(errs, fmt.Errorf("%w: tokens[%d] repeats tokens[%d]", ErrDuplicateToken, i, j))
			continue
		}
		first[t.Token] = i
		m[t.Token] = t.Identity
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}

// Defaults for JWT claim names.
const (
	DefaultUserClaim   = "sub"
	DefaultRolesClaim  = "roles"
	DefaultTenantClaim = "tenant"
)

// Validate checks the config and fills defaults.
func (c *Config) Validate() error {
	var errs []error
	for tok, id := range c.Tokens {
		if tok == "" {
			errs = append(errs, errors.New("auth: static token must not be empty"))
		}
		if id.User == "" {
			// Never print the token itself: configs end up in logs.
			errs = append(errs, errors.New("auth: static token has no user"))
		}
	}
	if c.JWT.Secret == "" && (c.JWT.Issuer != "" || c.JWT.Audience != "") {
		errs = append(errs, errors.New("auth: jwt issuer or audience set without a secret"))
	}
	if c.JWT.UserClaim == "" {
		c.JWT.UserClaim = DefaultUserClaim
	}
	if c.JWT.RolesClaim == "" {
		c.JWT.RolesClaim = DefaultRolesClaim
	}
	if c.JWT.TenantClaim == "" {
		c.JWT.TenantClaim = DefaultTenantClaim
	}
	for _, r := range c.AdminRoles {
		if r == "" {
			errs = append(errs, errors.New("auth: admin roles must not be empty strings"))
			break
		}
	}
	return errors.Join(errs...)
}

// Errors returned by Authenticate. Each wraps a more detailed cause; the
// gateway answers every one of them with 401 and Code(err).
var (
	// ErrMissingToken: no Authorization header.
	ErrMissingToken = errors.New("auth: missing bearer token")
	// ErrMalformedToken: the header is not "Bearer <token>", or the JWT
	// cannot be parsed.
	ErrMalformedToken = errors.New("auth: malformed token")
	// ErrBadSignature: the JWT signature does not verify, or its algorithm
	// is not HS256.
	ErrBadSignature = errors.New("auth: bad token signature")
	// ErrExpired: the JWT is past its exp (or before its nbf).
	ErrExpired = errors.New("auth: token expired")
	// ErrInvalidClaims: the JWT verifies but its issuer, audience, user or
	// tenant claim is wrong, or a required claim (user, exp) is missing.
	ErrInvalidClaims = errors.New("auth: invalid token claims")
	// ErrUnknownToken: an opaque token that is not a configured static token.
	ErrUnknownToken = errors.New("auth: unknown token")
)

// Code returns a short machine-readable code for an Authenticate error.
func Code(err error) string {
	switch {
	case errors.Is(err, ErrMissingToken):
		return "MISSING_TOKEN"
	case errors.Is(err, ErrMalformedToken):
		return "MALFORMED_TOKEN"
	case errors.Is(err, ErrBadSignature):
		return "BAD_SIGNATURE"
	case errors.Is(err, ErrExpired):
		return "TOKEN_EXPIRED"
	case errors.Is(err, ErrInvalidClaims):
		return "INVALID_CLAIMS"
	case errors.Is(err, ErrUnknownToken):
		return "UNKNOWN_TOKEN"
	}
	return "UNAUTHENTICATED"
}

// Authenticator resolves bearer tokens. It is safe for concurrent use.
type Authenticator struct {
	// static is keyed by the SHA-256 of the token, so a lookup's timing
	// says nothing about how much of a guessed token was right.
	static map[[sha256.Size]byte]Identity
	jwt    JWT
	parser *jwt.Parser
}

// New validates cfg and returns an Authenticator.
func New(cfg Config) (*Authenticator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &Authenticator{static: make(map[[sha256.Size]byte]Identity, len(cfg.Tokens)), jwt: cfg.JWT}
	for tok, id := range cfg.Tokens {
		id.Roles = append([]string(nil), id.Roles...)
		a.static[sha256.Sum256([]byte(tok))] = id
	}
	if cfg.JWT.Secret != "" {
		opts := []jwt.ParserOption{jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()})}
		if cfg.JWT.Issuer != "" {
			opts = append(opts, jwt.WithIssuer(cfg.JWT.Issuer))
		}
		if cfg.JWT.Audience != "" {
			opts = append(opts, jwt.WithAudience(cfg.JWT.Audience))
		}
		if !cfg.JWT.OptionalExp {
			opts = append(opts, jwt.WithExpirationRequired())
		}
		a.parser = jwt.NewParser(opts...)
	}
	return a, nil
}

// Enabled reports whether any authentication is configured. When it is
// not, Authenticate trusts every caller.
func (a *Authenticator) Enabled() bool {
	return a != nil && (len(a.static) > 0 || a.parser != nil)
}

// Authenticate returns the identity behind r's bearer token. With
// authentication off it returns the zero Identity and no error, whatever
// the request carries. Errors wrap one of the Err* sentinels.
func (a *Authenticator) Authenticate(r *http.Request) (Identity, error) {
	if !a.Enabled() {
		return Identity{}, nil
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		return Identity{}, ErrMissingToken
	}
	scheme, token, ok := strings.Cut(h, " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return Identity{}, fmt.Errorf("%w: want \"Authorization: Bearer <token>\"", ErrMalformedToken)
	}
	return a.AuthenticateToken(token)
}

// AuthenticateToken resolves a bare token, for callers that carry it
// elsewhere than the Authorization header.
func (a *Authenticator) AuthenticateToken(token string) (Identity, error) {
	if !a.Enabled() {
		return Identity{}, nil
	}
	if id, ok := a.static[sha256.Sum256([]byte(token))]; ok {
		return Identity{User: id.User, Roles: append([]string(nil), id.Roles...), Tenant: id.Tenant}, nil
	}
	if a.parser == nil {
		return Identity{}, ErrUnknownToken
	}
	if strings.Count(token, ".") != 2 {
		if len(a.static) > 0 {
			return Identity{}, ErrUnknownToken
		}
		return Identity{}, fmt.Errorf("%w: not a JWT", ErrMalformedToken)
	}
	return a.parseJWT(token)
}

func (a *Authenticator) parseJWT(token string) (Identity, error) {
	claims := jwt.MapClaims{}
	_, err := a.parser.ParseWithClaims(token, claims, func(*jwt.Token) (any, error) {
		return []byte(a.jwt.Secret), nil
	})
	switch {
	case err == nil:
	case errors.Is(err, jwt.ErrTokenMalformed):
		return Identity{}, fmt.Errorf("%w: %w", ErrMalformedToken, err)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return Identity{}, fmt.Errorf("%w: %w", ErrBadSignature, err)
	case errors.Is(err, jwt.ErrTokenExpired), errors.Is(err, jwt.ErrTokenNotValidYet):
		return Identity{}, fmt.Errorf("%w: %w", ErrExpired, err)
	default:
		return Identity{}, fmt.Errorf("%w: %w", ErrInvalidClaims, err)
	}
	user, _ := claims[a.jwt.UserClaim].(string)
	if user == "" {
		return Identity{}, fmt.Errorf("%w: no string claim %q", ErrInvalidClaims, a.jwt.UserClaim)
	}
	roles, err := rolesOf(claims[a.jwt.RolesClaim])
	if err != nil {
		return Identity{}, fmt.Errorf("%w: claim %q: %w", ErrInvalidClaims, a.jwt.RolesClaim, err)
	}
	var tenant string
	switch v := claims[a.jwt.TenantClaim].(type) {
	case nil:
	case string:
		tenant = v
	default:
		return Identity{}, fmt.Errorf("%w: claim %q is not a string", ErrInvalidClaims, a.jwt.TenantClaim)
	}
	return Identity{User: user, Roles: roles, Tenant: tenant}, nil
}

// rolesOf accepts the two shapes identity providers commonly emit: a JSON
// array of strings, or one comma-separated string.
func rolesOf(v any) ([]string, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil
	case string:
		var out []string
		for _, r := range strings.Split(v, ",") {
			if r = strings.TrimSpace(r); r != "" {
				out = append(out, r)
			}
		}
		return out, nil
	case []any:
		out := make([]string, 0, len(v))
		for _, r := range v {
			s, ok := r.(string)
			if !ok {
				return nil, fmt.Errorf("role %v is not a string", r)
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, fmt.Errorf("want an array of strings or a string, got %T", v)
}
