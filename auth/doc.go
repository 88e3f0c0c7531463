// Package auth turns an HTTP request's bearer token into a caller identity
// for the gateway: a user, roles and a tenant. The identity travels in
// requestMeta, where the task actions compare it with a task's taskUser and
// taskRoles, so authentication lives here and authorization stays with the
// task; IsAdmin asks whether a caller holds one of the configured admin
// roles. Static tokens suit service accounts; HS256 JWTs suit users of an
// existing login. With neither configured every caller is trusted, which is
// the dev default.
package auth
