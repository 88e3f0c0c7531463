package bench

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// sagaFiles are the sagas every runner under test must load. They are
// ordinary saga files: the bench measures what users would run.
//
//go:embed sagas/*.yaml
var sagaFiles embed.FS

// WriteSagas writes the bench sagas into dir, creating it. A runner started
// outside the bench (--runner=external) needs them in its sagas folder.
func WriteSagas(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("bench: sagas folder: %w", err)
	}
	return fs.WalkDir(sagaFiles, "sagas", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := sagaFiles.ReadFile(path)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(path)), b, 0o644); err != nil {
			return fmt.Errorf("bench: write saga: %w", err)
		}
		return nil
	})
}
