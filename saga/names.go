package saga

import "fmt"

// maxDomainLen bounds a domain name: it is part of every Redis key of the
// domain, and each distinct name keeps a store in memory.
const maxDomainLen = 64

// ValidDomain checks a state-manager domain name: 1 to 64 characters of
// [A-Za-z0-9._-]. The store refuses other names, so a record naming one
// would be retried for ever instead of dead-lettered.
func ValidDomain(name string) error {
	if name == "" || len(name) > maxDomainLen {
		return fmt.Errorf("domain name must be 1 to %d characters, got %d", maxDomainLen, len(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("domain name %s: only letters, digits, '.', '_' and '-' are allowed", quoteCut(name))
		}
	}
	return nil
}
