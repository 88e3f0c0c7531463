// Package kfakegroup holds tests of the embedded broker's classic consumer
// group coordinator as sagarunner relies on it: runners are killed and
// restarted at any moment, also while a rebalance is under way, and the
// group must settle again within one session timeout. The tests use plain
// kgo clients on kfake and no sagarunner code, so a failure points at the
// broker (third_party/kfake) and not at the runner.
package kfakegroup
