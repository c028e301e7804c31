// Command steward is the Steward server, its CLI, the demo and the fleet
// simulator in one binary:
//
//	steward serve [flags]        run a node
//	steward demo                 run a node with a simulated fleet
//	steward sim [flags]          run simulated devices against a node
//	steward <resource> <verb>    manage the fleet through the REST API
//
// Run `steward help` for the list.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/steward-iot/steward/internal/cli"
	"github.com/steward-iot/steward/internal/runtimetune"
	"github.com/steward-iot/steward/sim"
)

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "serve" || os.Args[1] == "demo") {
		runtimetune.Reexec() // smaller goroutine stacks for device sessions
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stdout, stderr)
	case "demo":
		return demo(ctx, args[1:], stdout, stderr)
	case "sim":
		return sim.Main(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		usage(stdout)
		return 0
	default:
		return cli.Run(ctx, args, stdin, stdout, stderr, os.Getenv)
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `steward: remote management for IoT fleets

Server:
  steward serve [--data DIR] [--store URL] [--api-addr A] [--mqtt-addr A] [--device-addr A] [--device-host NAME]...
  steward demo  [--data DIR] [--devices N] [--unapproved K]
  steward sim   --devices N --server HOST --server-ca FILE --manufacturer DIR [...]

Fleet (over the REST API; STEWARD_URL, STEWARD_TOKEN or --token-file, -o table|json;
"steward GROUP COMMAND --help" for each):
`)
	cli.Summary(w)
}
