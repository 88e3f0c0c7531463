// Package ui is the web task inbox and instance monitor (SPEC §14), served
// by the gateway under /ui/ from templates and assets embedded in the
// binary: nothing is fetched at run time and there is no build step.
//
// The UI holds no rules of its own. Every page and every action is a call
// to the gateway's own HTTP API, made in process with the signed-in
// caller's token, so authentication, authorisation, tenant scoping and
// validation are exactly the API's: a page shows what the API answers and
// an action does what the API does, refusals included. What the UI adds is
// a browser session (an HttpOnly cookie standing for a token kept on the
// server), CSRF protection for its forms, HTML, and live updates: one
// consumer per process reads the task-event and audit topics from their end
// and fans each event out over Server-Sent Events to the clients that may
// see it, asking the API on each client's behalf.
package ui
