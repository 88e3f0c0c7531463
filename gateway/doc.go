// Package gateway is sagarunner's HTTP front door. It turns a request on a
// saga's trigger path into a Kafka record whose requestMeta carries the
// authenticated caller and a replyTo topic, waits for the runner's response
// record on that topic and answers with the response's payload; it also
// serves a task inbox read straight from the state managers, the task
// operations of SPEC §12 (POST /tasks/{domain}/{id}/{op}, each sent to the
// runners as its direct action, and GET …/history read from the store), a publish
// endpoint, health, readiness and Prometheus metrics. The gateway never runs
// saga steps itself, so any number of instances can sit beside any number of
// runners: each instance reads every partition of the reply topic and picks
// out the request ids it is waiting for.
//
// Trust boundary (SPEC §11): the gateway builds every record's requestMeta
// itself, from the authenticated identity (user, roles, tenant) alone; a
// body is always data, the payload.parameters of that envelope, and the
// record is read back with the runners' strict decoder before it is
// produced. POST /topics/{topic} reaches only Config.PublishTopics and never
// an internal topic. Task reads are scoped to the caller's tenant and to
// what it may act on or has acted on; suspended envelopes and sweeping
// sagas are for admin roles.
//
// Response shape of a saga path: the body is the response envelope's
// payload as JSON, and the envelope's result travels in the X-Saga-Status,
// X-Saga-Code headers (X-Request-Id names the request). SUCCESS, TIMEOUT and
// CANCELLED answer 200; FAIL answers an error body {"error", "code",
// "requestId"} with 404 for TASK_NOT_FOUND, 409 for TASK_CLOSED and the
// lifecycle's conflicts (TASK_CLAIMED, TASK_IN_APPROVAL, NOT_IN_APPROVAL,
// ALREADY_APPROVED, SELF_APPROVAL, TASK_CHANGED, TASK_ID_IN_USE), 403 for
// FORBIDDEN, 400 for BAD_INPUT and PATTERN_ERROR, 501 for
// LIFECYCLE_UNSUPPORTED and 422 for any other code. A task operation
// answers the same way, its body on success being the task's state
// (taskId, domain, status, claimedBy, deadline, outcome, approvals).
// No response within Config.Timeout answers 504 with code GATEWAY_TIMEOUT
// (the request may still complete). Every error the gateway itself produces
// is {"error": "...", "code": "..."}.
package gateway
