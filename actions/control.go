package actions

import (
	"context"

	"github.com/sagarunner/sagarunner/saga/envelope"
)

func init() {
	Default.Register(&Spec{
		Name: "Fail",
		Doc:  "Ends the instance failed, with a code and message in the result.",
		Params: []Param{
			{Name: "code", Type: String, Default: CodeFailed, Doc: "Result code", Example: "REJECTED"},
			{Name: "message", Type: String, Doc: "Result message; default: names the step", Example: "job post rejected"},
		},
		New: func(c Config) (Action, error) {
			return &fail{code: c.String("code"), message: c.String("message")}, nil
		},
	})
	Default.Register(&Spec{
		Name: "Finish",
		Doc:  "Ends the instance with SUCCESS, whatever routes follow.",
		New:  func(Config) (Action, error) { return finish{}, nil },
	})
}

type fail struct{ code, message string }

// Execute finishes the instance as well as failing it: a Fail step is an
// explicit end, which must hold even in a saga with autoFail off.
func (a *fail) Execute(_ context.Context, _ *Exec, env *envelope.Envelope) (Outcome, error) {
	if a.message != "" {
		env.Fail(a.code, "%s", a.message)
	} else {
		env.Fail(a.code, "failed at step %q", env.SagaMeta.StepID)
	}
	return Outcome{Env: env, Finish: true}, nil
}

type finish struct{}

func (finish) Execute(_ context.Context, _ *Exec, env *envelope.Envelope) (Outcome, error) {
	env.Succeed()
	return Outcome{Env: env, Finish: true}, nil
}
