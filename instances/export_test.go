package instances

// SetGeneral makes s send every group in the apply script's general form.
func SetGeneral(s *Store, on bool) { s.general = on }
