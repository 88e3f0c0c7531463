// Package config loads sagarunner's configuration with viper: defaults, then a
// YAML file, then SAGARUNNER_* environment variables, then command-line flags.
// It is the only package besides cmd that knows viper; everything else takes
// the typed structs it produces.
package config
