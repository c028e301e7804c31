package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
)

// Summary writes one line per command group of the CLI, "steward GROUP
// sub1|sub2|…", from the command tree itself, so that the top-level usage
// never falls behind the commands.
func Summary(w io.Writer) {
	e := &env{ctx: context.Background(), stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }}
	for _, c := range e.rootCommand().Commands() {
		if c.Hidden || c.Name() == "help" {
			continue
		}
		var subs []string
		for _, s := range c.Commands() {
			if !s.Hidden && s.Name() != "help" {
				subs = append(subs, s.Name())
			}
		}
		line := "  steward " + c.Name()
		if len(subs) > 0 {
			line += " " + strings.Join(subs, "|")
		}
		fmt.Fprintln(w, line)
	}
}
